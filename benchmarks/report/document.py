"""The report's document model: the blocks a report is made of.

Sections (:mod:`session_proxy_bench.report.sections`) build a list of these blocks
from a results document; the renderers (:mod:`session_proxy_bench.report.markdown`,
:mod:`session_proxy_bench.report.html_page`) turn the same list into text, so both
formats carry the same content.  Blocks hold already formatted text: they
know nothing of measurements, and the renderers know nothing of sections.
Text in a block may use ``code`` and **bold**, which both renderers support;
use no other markdown in it, since the HTML renderer would show it verbatim.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Heading:
    """A section heading."""

    level: int
    text: str


@dataclasses.dataclass
class Paragraph:
    """Running text; may use ``code`` and **bold**."""

    text: str


@dataclasses.dataclass
class Bullets:
    """An unordered list."""

    items: list[str]


@dataclasses.dataclass
class Table:
    """A table of already formatted cells."""

    headers: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Code:
    """A preformatted block."""

    text: str


@dataclasses.dataclass
class Contents:
    """A table of contents: ``(level, heading text, anchor)`` per entry, in order."""

    entries: list[tuple[int, str, str]]


@dataclasses.dataclass
class Figure:
    """An SVG chart with a caption; written as ``chart-<name>.svg`` next to the markdown."""

    name: str
    title: str
    svg: str
    caption: str

    @property
    def filename(self) -> str:
        """The chart's file name next to report.md."""
        return f"chart-{self.name}.svg"


Block = Heading | Paragraph | Bullets | Table | Code | Contents | Figure
