"""The report's title and opening paragraph: backend, run period and sample counts."""

from __future__ import annotations

import datetime
from typing import Any

from ..document import Block, Heading, Paragraph
from ..measurements import Measurements

TITLE = "Session proxy vs logical API vs direct: benchmark report"


def _duration(results: dict[str, Any]) -> str:
    try:
        started = datetime.datetime.fromisoformat(results["started"])
        finished = datetime.datetime.fromisoformat(results["finished"])
    except (KeyError, TypeError, ValueError):
        return "not recorded"
    return f"{(finished - started).total_seconds():.0f} s"


def intro_section(m: Measurements) -> list[Block]:
    """The level-1 title and the paragraph that says what ran, where and for how long."""
    results = m.results
    backend = m.environment.get("backend", "an unrecorded backend")
    intro = Paragraph(
        f"Direct database access, the session proxy and the logical API running the same "
        f"operations on {backend}. Run from {results.get('started', 'not recorded')} to "
        f"{results.get('finished', 'not recorded')} ({_duration(results)}); {len(m.samples)} "
        f"samples, {len(m.floors)} floor samples, {len(m.throughput)} throughput runs. Every "
        "number below is computed from the run's results file.")
    return [Heading(1, TITLE), intro]
