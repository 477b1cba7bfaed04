"""Render report blocks as one self-contained HTML page.

The page has its CSS inline and each figure's SVG embedded, and no scripts,
so it can be mailed or attached as one file.  Like the Markdown renderer it
knows only the document model (:mod:`session_proxy_bench.report.document`); of inline
markup it understands ``code`` and **bold**, and escapes everything else.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from .anchors import heading_anchors
from .document import Block, Bullets, Code, Contents, Figure, Heading, Paragraph, Table

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; }
pre { background: #f6f6f6; padding: 0.7em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
figure { margin: 1em 0 1.6em; }
nav.contents ul { margin: 0.2em 0; }
figcaption { font-size: 0.9em; color: #555; }
svg { max-width: 100%; height: auto; }
"""


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _table(block: Table) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.headers)
    body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row)
                   + "</tr>" for row in block.rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _contents(block: Contents) -> str:
    """Nested lists of links, one level per heading level."""
    out: list[str] = []
    depth = 0
    top = min((level for level, _, _ in block.entries), default=0)
    for level, text, anchor in block.entries:
        target = level - top + 1
        if target > depth:
            out += ["<ul>"] * (target - depth)
        else:
            out.append("</li>")
            out += ["</ul></li>"] * (depth - target)
        depth = target
        out.append(f'<li><a href="#{html.escape(anchor)}">{_inline_html(text)}</a>')
    if depth:
        out.append("</li>")
        out += ["</ul></li>"] * (depth - 1) + ["</ul>"]
    return f'<nav class="contents">{"".join(out)}</nav>'


def _block(block: Block, anchor: str | None = None) -> str | None:
    if isinstance(block, Heading):
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        return f"<h{block.level}{ident}>{_inline_html(block.text)}</h{block.level}>"
    if isinstance(block, Contents):
        return _contents(block)
    if isinstance(block, Paragraph):
        return f"<p>{_inline_html(block.text)}</p>"
    if isinstance(block, Bullets):
        return ("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items)
                + "</ul>")
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Figure):
        return (f"<figure>{block.svg}<figcaption>{_inline_html(block.caption)}"
                "</figcaption></figure>")
    return None


def render_html(blocks: Sequence[Block]) -> str:
    """The blocks as one self-contained HTML page: inline CSS and SVG, no scripts."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "Benchmark report")
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>",
           "<body>"]
    anchors = heading_anchors(blocks)
    out += [text for index, block in enumerate(blocks)
            if (text := _block(block, anchors.get(index))) is not None]
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
