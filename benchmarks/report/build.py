"""Assemble the report from its sections and write ``report.md``, its charts and ``report.html``.

The data flows one way: results -> :class:`~.measurements.Measurements` ->
sections (lists of blocks) -> renderers (text) -> files.  This module is the
only one that knows the order of the sections and the file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .anchors import heading_anchors
from .document import Block, Contents, Figure, Heading
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
from .sections.summary import summary_section
from .sections.targets import targets_section
from .sections.threats import threats_section
from .sections.throughput import throughput_section

#: Heading levels listed in the contents.
CONTENTS_LEVELS = (2, 3)


def contents(blocks: list[Block]) -> Contents:
    """The contents of ``blocks``: their level-2 and level-3 headings with anchors."""
    anchors = heading_anchors(blocks)
    return Contents([(block.level, block.text, anchors[index])
                     for index, block in enumerate(blocks)
                     if isinstance(block, Heading) and block.level in CONTENTS_LEVELS])


def build_report(results: dict[str, Any]) -> list[Block]:
    """The report's content as blocks, computed from ``results`` only.

    The summary comes first, then the contents, then the details; the
    sections answering the thread's questions follow the details.
    """
    m = Measurements(results)
    head = [*intro_section(m), *summary_section(m)]
    details = [
        *method_section(m), *environment_section(m), *floors_section(m),
        *targets_section(m), *operations_section(m), *throughput_section(m),
        *figures_section(m), *findings_section(m), *security_section(results),
        # The load run (``session-proxy-bench load``) is separate; embedded with
        # ``run --load-results``, or the section says how to add it.
        *reliability_section(results),
        *questions_section(results), *answers_section(m), *threats_section(m),
    ]
    # Anchors are computed over the whole page so repeated headings number alike.
    everything = [*head, Heading(2, "Contents"), *details]
    entries = [e for e in contents(everything).entries if e[1] != "Contents"]
    return [*head, Heading(2, "Contents"), Contents(entries), *details]


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
