"""Results files: compressed reading and deterministic writing, and the README block command.

A committed results file must be byte-stable (gzip without a timestamp, xz
with fixed settings) and readable by ``session-proxy-bench report`` in every
form; ``session-proxy-bench readme`` replaces exactly the marked block of a
README and refuses one without markers.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from session_proxy_bench.report.readme import BEGIN, END, update_readme
from session_proxy_bench.report.results_file import read_results, write_results
from tests.bench.test_report import make_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["results.json", "results.json.gz", "results.json.xz"])
def test_round_trip_and_identical_bytes(tmp_path: Path, name: str) -> None:
    results = make_results()
    first = write_results(tmp_path / "a" / name, results).read_bytes()
    time.sleep(1.1)  # a gzip header with a timestamp would now differ
    second = write_results(tmp_path / "b" / name, results).read_bytes()
    assert first == second
    assert read_results(tmp_path / "a" / name) == json.loads(json.dumps(results))
    if name.endswith(".gz"):
        assert first[4:8] == b"\0\0\0\0"  # mtime 0
        assert gzip.decompress(first).decode().startswith('{\n "format": 1')


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a .gz file"):
        read_results(tmp_path / "bad.json.gz")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="one JSON object"):
        read_results(tmp_path / "list.json")


def test_update_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{BEGIN}\nold\n{END}\nafter\n")
    assert update_readme(readme, f"{BEGIN}\nnew\n{END}")
    assert readme.read_text() == f"before\n{BEGIN}\nnew\n{END}\nafter\n"
    assert not update_readme(readme, f"{BEGIN}\nnew\n{END}")
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="has no"):
        update_readme(readme, f"{BEGIN}\nnew\n{END}")


def test_cli_report_and_readme_from_a_compressed_file(tmp_path: Path) -> None:
    results = write_results(tmp_path / "docs" / "run" / "results.json.xz", make_results())
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nhand-written numbers\n{END}\n")
    done = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.cli", "report", "docs/run/results.json.xz",
         "--out", "docs/run", "--readme", "README.md"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "docs" / "run" / "report.md").exists() and results.exists()
    block = readme.read_text()
    assert "hand-written numbers" not in block
    assert ("<!-- written by `session-proxy-bench readme docs/run/results.json.xz README.md`"
            in block)
    assert "[docs/run/report.md](docs/run/report.md)" in block
    assert "Where the proxy loses:" in block and "Where the proxy wins:" in block
    # Proxy = 1 + 6 RTT and logical = 3 + RTT: the proxy wins at 0 ms, loses above.
    assert "`get_dag_run` 0.35× (" in block
    missing = subprocess.run(
        [sys.executable, "-m", "session_proxy_bench.cli", "readme", "nowhere.json.xz",
         "README.md"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "cannot read results file nowhere.json.xz" in missing.stderr
