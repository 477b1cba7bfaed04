"""The section answering "what does a call return, and how is a change saved?" (Ash).

Reads :mod:`session_proxy_bench.questions.calls_and_saves`'s raw numbers:
per step and design, the mean round trips, bytes and statements.
"""

from __future__ import annotations

from typing import Any

from ..document import Block, Heading, Paragraph, Table
from ..formatting import DASH, fmt_bytes, fmt_count

STEP_LABELS = {
    "get": "get the dag run",
    "lazy_load": "its task instances, after the fact",
    "save": "set `state` and `queued_at`, save",
}


def _mean(design: dict[str, Any], step: str, counter: str) -> float:
    return design[step][counter]["mean"]


def _bytes(design: dict[str, Any], steps: tuple[str, ...]) -> float:
    return sum(_mean(design, s, "request_bytes") + _mean(design, s, "response_bytes")
               for s in steps)


def _trips(design: dict[str, Any], steps: tuple[str, ...]) -> float:
    return sum(_mean(design, s, "round_trips") for s in steps)


def calls_and_saves_section(raw: dict[str, Any]) -> list[Block]:
    """Round trips and bytes of get -> lazy load -> modify -> save, in both designs."""
    proxy, logical = raw["designs"]["proxy"], raw["designs"]["logical"]
    operations = raw["logical_operations"]
    rows = []
    for step, label in STEP_LABELS.items():
        rows.append([
            label,
            fmt_count(_trips(proxy, (step,))), fmt_bytes(_bytes(proxy, (step,))),
            fmt_count(_mean(proxy, step, "statements")),
            f"`{operations[step]}`",
            fmt_count(_trips(logical, (step,))), fmt_bytes(_bytes(logical, (step,))),
            fmt_count(_mean(logical, step, "statements")),
        ])
    for label, steps in (("get, modify, save", ("get", "save")),
                         ("get, load task instances, modify, save", ("get", "lazy_load", "save"))):
        rows.append([f"**{label}**",
                     fmt_count(_trips(proxy, steps)), fmt_bytes(_bytes(proxy, steps)), DASH,
                     DASH, fmt_count(_trips(logical, steps)), fmt_bytes(_bytes(logical, steps)),
                     DASH])
    loaded = raw["task_instances_loaded"]
    saved = raw["saved"]
    error = raw.get("logical_lazy_load_error")
    lazy = (f"touching `dag_run.task_instances` on it raised `{error}`"
            if error else "touching `dag_run.task_instances` on it did not raise")
    background = sum(_mean(proxy, s, "background_round_trips") for s in STEP_LABELS)
    return [
        Heading(3, "What does a call return, and how is a change saved? "
                   "(asked by Ash Berlin-Taylor)"),
        Paragraph(
            "Ash asked what `db_client.get_dag_run(...)` actually returns and how "
            "`dag_run.queued_at = timezone.now()` is then saved. Measured here: one dag run of "
            f"{raw['tasks']} task instances, fetched, its task instances read, two attributes "
            "changed and saved, counted by the client's own counters "
            f"(means of {raw['samples']} repetitions; bytes are request plus response bodies)."),
        Table(["step", "proxy round trips", "proxy bytes", "proxy statements",
               "logical operation", "logical round trips", "logical bytes",
               "logical statements"], rows),
        Paragraph(
            "**Proxy**: a plain SQLAlchemy `Session` ran the query and returned an attached "
            f"`DagRun`; reading `dag_run.task_instances` lazy-loaded {loaded['proxy']} rows in "
            f"{fmt_count(_trips(proxy, ('lazy_load',)))} more round trip, and `commit()` saved "
            "the change with the flush it already does (no new API). "
            f"Background commits of read-only transactions: {fmt_count(background)} per "
            "sequence."),
        Paragraph(
            f"**Logical**: `get_dag_run` returned a detached `{raw['logical_returns']}` with its "
            f"column values only; {lazy}, so the client called `{operations['lazy_load']}` "
            f"instead ({loaded['logical']} instances, "
            f"{fmt_count(_trips(logical, ('lazy_load',)))} round trip), and saving needed the "
            f"dedicated operation `{operations['save']}`, one per kind of change. Logical "
            "statement counts include the server's record of the call's outcome (idempotency)."),
        Paragraph(
            "Both saves were read back from the database: "
            f"proxy {'saved' if saved['proxy'] else '**not saved**'}, "
            f"logical {'saved' if saved['logical'] else '**not saved**'}."),
    ]
