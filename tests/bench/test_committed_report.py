"""The committed report and the README's results block come from the committed results file.

``docs/report-postgresql/results.json.xz`` (or ``.json.gz``) is the raw
results of the run the report describes.  These tests regenerate the report
from it into a temporary directory and compare every file byte for byte
with ``docs/report-postgresql/``, and rebuild the README's "Results so far"
block and compare it with README.md.  When the results file is not committed
they skip, saying so.  After a new run, regenerate both with::

    session-proxy-bench report docs/report-postgresql/results.json.xz --out docs/report-postgresql
    session-proxy-bench readme docs/report-postgresql/results.json.xz README.md
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from session_proxy_bench.cli import readme_command
from session_proxy_bench.report import write_report
from session_proxy_bench.report.readme import BEGIN, END, report_link, results_block
from session_proxy_bench.report.results_file import read_results

ROOT = Path(__file__).resolve().parents[2]
REPORT_DIR = Path("docs/report-postgresql")
README = Path("README.md")


def _committed_results() -> Path:
    for name in ("results.json.xz", "results.json.gz"):
        if (ROOT / REPORT_DIR / name).exists():
            return REPORT_DIR / name
    pytest.skip(f"no committed results file in {REPORT_DIR} (results.json.xz or .json.gz): "
                "the report cannot be checked against its data")


def _written_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.name.startswith("chart-") or p.name in ("report.md", "report.html")}


def test_committed_report_regenerates_byte_for_byte(tmp_path: Path) -> None:
    results = read_results(ROOT / _committed_results())
    write_report(results, tmp_path)
    fresh = _written_files(tmp_path)
    committed = _written_files(ROOT / REPORT_DIR)
    assert fresh["report.md"].decode("utf-8") == committed["report.md"].decode("utf-8")
    assert sorted(fresh) == sorted(committed)
    assert fresh == committed


def test_cli_regenerates_it_too(tmp_path: Path) -> None:
    results = _committed_results()
    done = subprocess.run([sys.executable, "-m", "session_proxy_bench.cli", "report",
                           str(results), "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.md").read_bytes() == (ROOT / REPORT_DIR / "report.md").read_bytes()


def test_readme_results_block_is_generated_from_the_committed_results() -> None:
    results_path = _committed_results()
    text = (ROOT / README).read_text(encoding="utf-8")
    committed = text[text.index(BEGIN):text.index(END) + len(END)]
    expected = results_block(read_results(ROOT / results_path),
                             report_link(results_path, README),
                             readme_command(results_path, README))
    assert committed == expected


def test_readme_has_the_results_block() -> None:
    text = (ROOT / README).read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
