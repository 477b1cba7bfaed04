"""The anchor of every heading, as GitHub names it, so contents links work in both formats.

GitHub gives each Markdown heading an ``id``: its text in lower case, with
markup and punctuation removed and spaces turned into hyphens, ``-1``,
``-2``, ... added to repeats.  :func:`heading_anchors` computes the same
names; the contents block links to them and the HTML renderer puts them on
its headings, so ``#findings`` leads to the same heading on GitHub and in
``report.html``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .document import Block, Heading


def slug(text: str) -> str:
    """GitHub's anchor for a heading's text (before making repeats unique)."""
    plain = re.sub(r"[`*]", "", text).strip().lower()
    kept = re.sub(r"[^\w\- ]", "", plain)
    return kept.replace(" ", "-")


def heading_anchors(blocks: Sequence[Block]) -> dict[int, str]:
    """Anchor of each heading block, keyed by its position in ``blocks``."""
    seen: dict[str, int] = {}
    anchors: dict[int, str] = {}
    for index, block in enumerate(blocks):
        if not isinstance(block, Heading):
            continue
        base = slug(block.text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors[index] = base if count == 0 else f"{base}-{count}"
    return anchors
