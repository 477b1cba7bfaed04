"""Assemble the report from its sections and write ``report.md``, its charts and ``report.html``.

The data flows one way: results -> :class:`~.measurements.Measurements` ->
sections (lists of blocks) -> renderers (text) -> files.  This module is the
only one that knows the order of the sections and the file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .document import Block, Figure
from .html_page import render_html
from .markdown import render_markdown
from .measurements import Measurements
from .sections.answers import answers_section
from .sections.environment import environment_section
from .sections.figures import figures_section
from .sections.findings import findings_section
from .sections.floors import floors_section
from .sections.intro import intro_section
from .sections.method import method_section
from .sections.operations import operations_section
from .sections.questions import questions_section
from .sections.reliability import reliability_section
from .sections.security import security_section
from .sections.targets import targets_section
from .sections.threats import threats_section
from .sections.throughput import throughput_section


def build_report(results: dict[str, Any]) -> list[Block]:
    """The report's content as blocks, computed from ``results`` only."""
    m = Measurements(results)
    # The load run (``session-proxy-bench load``) is separate; its section
    # appears when its result was embedded with ``run --load-results``.
    reliability = reliability_section(results) if results.get("reliability") else []
    return [
        *intro_section(m), *method_section(m), *environment_section(m), *floors_section(m),
        *targets_section(m), *operations_section(m), *throughput_section(m),
        *figures_section(m), *findings_section(m), *security_section(results), *reliability,
        *questions_section(results), *answers_section(m), *threats_section(m),
    ]


def write_report(results: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` (with its ``chart-*.svg`` files) and ``report.html`` to ``out_dir``.

    Returns the paths of the markdown and the HTML file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = build_report(results)
    for stale in out_dir.glob("chart-*.svg"):
        stale.unlink()
    for block in blocks:
        if isinstance(block, Figure):
            (out_dir / block.filename).write_text(block.svg + "\n", encoding="utf-8")
    markdown = out_dir / "report.md"
    page = out_dir / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks), encoding="utf-8")
    return markdown, page
