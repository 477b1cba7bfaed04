"""Render report blocks as GitHub-flavoured Markdown.

The renderer knows only the document model (:mod:`session_proxy_bench.report.document`):
any list of blocks can be rendered, whole reports as well as a single section
(``session-proxy-bench security`` and ``load`` use it that way).  Figures are
linked as ``chart-*.svg`` files, which :func:`session_proxy_bench.report.build.write_report`
writes next to the Markdown; the SVG itself is not embedded.
"""

from __future__ import annotations

from collections.abc import Sequence

from .document import Block, Bullets, Code, Contents, Figure, Heading, Paragraph, Table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(block: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
             "|" + "|".join("---" for _ in block.headers) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
    return "\n".join(lines)


def _block(block: Block) -> str | None:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    if isinstance(block, Contents):
        top = min((level for level, _, _ in block.entries), default=0)
        return "\n".join(f"{'  ' * (level - top)}- [{text}](#{anchor})"
                         for level, text, anchor in block.entries)
    if isinstance(block, Figure):
        return f"![{block.title}]({block.filename})\n\n*{block.caption}*"
    return None


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured markdown; figures link their ``chart-*.svg`` files."""
    out = [text for text in map(_block, blocks) if text is not None]
    return "\n\n".join(out) + "\n"
