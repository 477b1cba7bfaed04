"""The report's sections answering the thread's questions, one per question.

Each section function takes the question's raw numbers (``results["questions"][key]``,
see :mod:`session_proxy_bench.questions`) and returns its blocks; a question
missing from the results is left out.  :data:`QUESTION_SECTIONS` maps keys to
section functions in the report's order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..document import Block, Heading, Paragraph
from .q_calls_and_saves import calls_and_saves_section
from .q_ci_gate import ci_gate_section
from .q_integrity import integrity_section
from .q_inventory import inventory_section
from .q_isolation import isolation_section
from .q_logical_vs_aip44 import logical_vs_aip44_section
from .q_serialization import serialization_section
from .q_worker_cache import worker_cache_section

#: Question key -> section function, in the report's order.
QUESTION_SECTIONS: dict[str, Callable[..., list[Block]]] = {
    "calls_and_saves": calls_and_saves_section,
    "serialization": serialization_section,
    "isolation": isolation_section,
    "integrity": integrity_section,
    "worker_cache": worker_cache_section,
    "ci_gate": ci_gate_section,
    "inventory": inventory_section,
    "logical_vs_aip44": logical_vs_aip44_section,
}

#: Question key -> other entries of the results its section reads (passed by name).
RESULTS_READ: dict[str, tuple[str, ...]] = {"ci_gate": ("security",)}


def questions_section(results: dict[str, Any]) -> list[Block]:
    """One section per measured question of the thread."""
    measured = results.get("questions") or {}
    blocks: list[Block] = []
    for key, section in QUESTION_SECTIONS.items():
        if key in measured:
            extra = {name: results.get(name) for name in RESULTS_READ.get(key, ())}
            blocks.extend(section(measured[key], **extra))
    if not blocks:
        return []
    return [
        Heading(2, "The thread's questions, measured"),
        Paragraph("Each question of the seed thread, who asked it, and the numbers of this run "
                  "that answer it."),
        *blocks,
    ]

