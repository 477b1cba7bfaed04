"""The section answering "an inventory" (Ash): real Airflow 3 code paths through the proxy.

Renders ``results["questions"]["inventory"]``
(:mod:`session_proxy_bench.questions.inventory`, measured by
:mod:`session_proxy_bench.airflow_inventory`): per step of Airflow's own
DAG-processor and scheduler code, the round trips, statements and bytes
through the proxy, the statements the same code sends direct, and the
logical design's one call; or, when the run embedded no inventory, how to
make one.
"""

from __future__ import annotations

from typing import Any

from ...questions.inventory import QUESTION
from ..document import Block, Code, Heading, Paragraph, Table
from ..formatting import fmt_bytes, fmt_count


def _spread(summary: dict[str, Any], name: str) -> str:
    low, high = summary["min"].get(name), summary["max"].get(name)
    mean = fmt_count(summary["mean"].get(name))
    return mean if low == high else f"{mean} ({low}–{high})"


def _row(step: dict[str, Any]) -> list[str]:
    proxy, direct = step["proxy"], step["direct"]
    mean = proxy["mean"]
    size = (mean.get("request_bytes") or 0) + (mean.get("response_bytes") or 0)
    return [
        step["title"], step["per"], str(proxy["samples"]),
        _spread(proxy, "round_trips"), _spread(proxy, "statements"),
        _spread(direct, "statements"), fmt_bytes(size), str(step["logical_calls"]),
    ]


def inventory_section(raw: dict[str, Any]) -> list[Block]:
    """Heading, method and the table of steps (or how to measure them)."""
    blocks: list[Block] = [Heading(3, QUESTION.title)]
    if not raw.get("measured"):
        return blocks + [
            Paragraph(f"Asked by {QUESTION.asked_by}. Not measured in this run: Airflow "
                      "is measured in its own environment and the run embeds the result:"),
            Code(raw.get("how", "")),
        ]
    ended = ", ".join(f"{state.split('.')[-1]} {name}"
                      for name, state in raw["run_state"].items())
    blocks += [
        Paragraph(
            f"Asked by {QUESTION.asked_by}. Airflow {raw['airflow']}'s own code on "
            f"{raw['backend']}, through a session-proxy server (only `sql_alchemy_conn` "
            f"changed), on {raw['files']} generated DAG files and a run of `{raw['dag_id']}` "
            f"(the run ended {ended}). Counts per sample (mean, and the range when "
            "samples differ), from the client's counters; direct statements are the same "
            "code's without the proxy. "
            "In the logical design each step is one call to an API endpoint, by "
            "construction."),
        Table(["step", "per", "samples", "round trips (proxy)", "statements (proxy)",
               "statements (direct)", "bytes per sample (proxy)", "logical calls"],
              [_row(step) for step in raw["steps"]]),
    ]
    return blocks
