"""Turn a benchmark results document into ``report.md`` and a self-contained ``report.html``.

Every number in the report is computed from the results dict the runner
wrote (see :mod:`session_proxy_bench.runner`) with the helpers of
:mod:`session_proxy_bench.stats`; nothing is typed in by hand.  The report is built
once as a list of blocks (headings, paragraphs, tables, figures) and rendered
twice, so both formats carry the same content.  Charts are inline SVG from
:mod:`session_proxy_bench.charts`: embedded in the HTML and written next to the
markdown as ``chart-*.svg`` files.  Cells, modes or operations missing from
the results are reported as "not measured".

The package, in the direction the data flows:

- :mod:`.terms`: the modes and operations the report singles out;
- :mod:`.measurements`: the results grouped into summarised cells;
- :mod:`.formatting`: how numbers, durations and ratios are written;
- :mod:`.document`: the blocks (Heading, Paragraph, Table, Figure, ...);
- :mod:`.sections`: one module per report section, results -> blocks;
- :mod:`.markdown` and :mod:`.html_page`: blocks -> text;
- :mod:`.build`: the sections in order, and the files written.

Each module imports only modules listed before it (and :mod:`session_proxy_bench.stats`,
:mod:`session_proxy_bench.charts`, :mod:`session_proxy_bench.scenarios`), never this
``__init__``, which only re-exports what callers use.
"""

from __future__ import annotations

from .build import build_report, write_report
from .document import Block, Bullets, Code, Figure, Heading, Paragraph, Table
from .formatting import (
    DASH,
    NOT_MEASURED,
    compared,
    fmt,
    fmt_bytes,
    fmt_count,
    fmt_ms,
    fmt_percent,
    fmt_ratio,
    fmt_rtt,
    hide_passwords,
    plural,
)
from .html_page import render_html
from .markdown import render_markdown
from .measurements import Measurements, p50_latency
from .terms import (
    HEADLINE,
    KEY_OPERATIONS,
    MODES,
    REFERENCE_SCALE,
    SCALED_OPERATIONS,
    WRITE_OPERATIONS,
)

__all__ = [
    "DASH", "HEADLINE", "KEY_OPERATIONS", "MODES", "NOT_MEASURED", "REFERENCE_SCALE",
    "SCALED_OPERATIONS", "WRITE_OPERATIONS", "Block", "Bullets", "Code", "Figure", "Heading",
    "Measurements", "Paragraph", "Table", "build_report", "compared", "fmt", "fmt_bytes",
    "fmt_count", "fmt_ms", "fmt_percent", "fmt_ratio", "fmt_rtt", "hide_passwords",
    "p50_latency", "plural", "render_html", "render_markdown", "write_report",
]
