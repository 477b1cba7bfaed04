"""The benchmark report, rendered from a committed results file, is byte-for-byte what it was.

``tests/fixtures/report/results.json`` is a real ``session-proxy-bench run
--quick`` results file with an attack-suite run and a load run embedded, cut
down by ``tests/fixtures/report/trim_results.py`` to a few operations so that
it stays small while every report section has real numbers.  Next to it are
the Markdown the report generator wrote from it (``report.md``, compared
byte for byte so a diff shows what changed) and the SHA-256 of the HTML page
and of every chart (``expected-sha256.json``).

A deliberate change of the report's text, numbers or charts fails here; after
checking the new output, regenerate the expected files with

    python -m tests.bench.test_report_golden

and commit them with the change.  The last test checks the shape of the
package: data flows one way (results -> sections -> blocks -> renderers), with
no import cycle and no import hidden inside a function.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from session_proxy_bench.report import write_report

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "report"
RESULTS = FIXTURE / "results.json"
EXPECTED_MD = FIXTURE / "report.md"
EXPECTED_HASHES = FIXTURE / "expected-sha256.json"
PACKAGE = ROOT / "benchmarks" / "report"


def _hashes(out: Path) -> dict[str, str]:
    """SHA-256 of every file the report wrote except report.md, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out.iterdir()) if path.name != "report.md"}


def _write(out: Path) -> Path:
    markdown, _ = write_report(json.loads(RESULTS.read_text(encoding="utf-8")), out)
    return markdown


def test_markdown_is_byte_identical_to_the_committed_report(tmp_path: Path) -> None:
    markdown = _write(tmp_path)
    expected = EXPECTED_MD.read_bytes()
    # Compare text first for a readable diff, then bytes (line endings, encoding).
    assert markdown.read_text(encoding="utf-8") == expected.decode("utf-8")
    assert markdown.read_bytes() == expected


def test_html_and_charts_match_the_recorded_hashes(tmp_path: Path) -> None:
    _write(tmp_path)
    expected = json.loads(EXPECTED_HASHES.read_text())
    assert _hashes(tmp_path) == expected
    # The fixture is meant to exercise every section and several charts.
    assert "report.html" in expected and sum(n.startswith("chart-") for n in expected) >= 5


def test_fixture_reaches_every_section() -> None:
    headings = [line[3:] for line in EXPECTED_MD.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    assert headings == [
        "Summary", "Contents", "Method", "Environment", "Floors", "Targets",
        "Results per operation", "Throughput", "Charts", "Findings",
        "Security: which attacks each approach stops", "Reliability under load",
        "Answers to the seed thread's questions", "Threats to validity",
    ]
    text = EXPECTED_MD.read_text(encoding="utf-8")
    assert "was not run" not in text and "| stopped |" in text and "Invariant check" in text


def test_cli_report_regenerates_the_same_files(tmp_path: Path) -> None:
    """``session-proxy-bench report`` run as a process writes the same bytes."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "session_proxy_bench.cli", "report", str(RESULTS),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "report.md").read_bytes() == EXPECTED_MD.read_bytes()
    assert _hashes(out) == json.loads(EXPECTED_HASHES.read_text())


# --- the package's shape -----------------------------------------------------------------

#: What each module of benchmarks/report may import from the package (module names
#: relative to benchmarks.report; "sections.*" is any section module).
ALLOWED = {
    "terms": set(),
    "document": set(),
    "formatting": set(),
    "measurements": {"terms"},
    "anchors": {"document"},
    "results_file": set(),
    "markdown": {"document"},
    "html_page": {"document", "anchors"},
    "sections.*": {"document", "formatting", "measurements", "terms"},
    "sections.answers": {"document", "formatting", "measurements", "terms",
                         "sections.findings"},
    "sections.targets": {"document", "formatting", "measurements", "terms",
                         "sections.target_rows"},
}


def _module_name(path: Path) -> str:
    """``sections.findings`` for benchmarks/report/sections/findings.py, ``__init__`` for
    the package's own ``__init__``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def _internal_imports(path: Path) -> tuple[set[str], list[int]]:
    """Modules of benchmarks.report that ``path`` imports, and the lines of imports
    made inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["benchmarks", *path.parent.relative_to(PACKAGE.parent).parts]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            if node.module:
                targets.append([*base, *node.module.split(".")])
            else:
                targets += [[*base, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            targets += [alias.name.split(".") for alias in node.names]
        for target in targets:
            if target[:2] == ["benchmarks", "report"]:
                found.add(".".join(target[2:]) or "__init__")
    nested = [node.lineno for func in ast.walk(tree)
              if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
              for node in ast.walk(func) if isinstance(node, ast.Import | ast.ImportFrom)]
    return found, nested


def test_report_package_imports_flow_one_way() -> None:
    modules = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    assert {"document", "formatting", "measurements", "markdown", "html_page", "build",
            "sections.findings", "sections.security", "sections.reliability"} <= set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imports, nested = _internal_imports(path)
        assert not nested, f"{path}: imports inside a function at lines {nested}"
        assert "__init__" not in imports, f"{path} imports the package's __init__"
        graph[name] = imports - {"sections"}  # the sections package's __init__ is a docstring
        if name in ("build", "readme", "__init__", "sections"):
            continue
        allowed = ALLOWED.get(name, ALLOWED["sections.*"] if name.startswith("sections.")
                              else set())
        if name == "sections.questions":  # the registry of one section per question
            allowed = allowed | {m for m in modules if m.startswith("sections.q_")}
        assert imports <= allowed, f"{name} imports {sorted(imports - allowed)}"
    # No cycle: repeatedly remove modules whose imports are all removed already.
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"import cycle among {sorted(set(graph) - done)}"
        done |= ready
    assert {"sections.answers", "sections.security"} <= graph["build"]


def regenerate() -> None:
    """Rewrite report.md and expected-sha256.json from the current generator."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        EXPECTED_MD.write_bytes(_write(out).read_bytes())
        EXPECTED_HASHES.write_text(json.dumps(_hashes(out), indent=2) + "\n")
    print(f"wrote {EXPECTED_MD} and {EXPECTED_HASHES}")


if __name__ == "__main__":
    regenerate()
