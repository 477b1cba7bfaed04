"""The report's "Answers to the seed thread's questions" section, (a) to (e).

Each answer pairs the design argument (fixed text) with the numbers of this
run that bear on it: round trips per write, bytes and server share, the
largest scale measured, transaction-open ratios, and which operations ran in
which modes.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...stats import median, ratio
from ..document import Block, Heading, Paragraph, Table
from ..formatting import (
    DASH,
    NOT_MEASURED,
    fmt_bytes,
    fmt_count,
    fmt_ms_ci,
    fmt_percent,
    fmt_ratio,
    fmt_ratio_ci,
    fmt_rtt,
    listing,
    plural,
)
from ..measurements import Measurements, http_bytes
from ..terms import FEW_HUNDRED, MODES, SCALED_OPERATIONS, WRITE_OPERATIONS
from .findings import ratio_table


def _answer_returns(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(3, "(a) What do the calls return, and how is a change saved?"),
        Paragraph(
            "The thread asked what `db_client.get_dag_run(...)` returns and how "
            "`dag_run.queued_at = timezone.now()` is then saved. **Proxy**: the calls are the "
            "application's own SQLAlchemy calls, so they return the same attached ORM objects "
            "a direct session returns (relationships, lazy loads and refreshes work, each one "
            "more statement over HTTP), and a change is saved by the normal flush and commit; "
            "no new API is needed. **Logical**: the operation returns detached instances "
            "carrying column values only (no session: nothing lazy-loads, changes are not "
            "tracked), so every write needs a dedicated operation, such as the thread's "
            "`enqueue_dag_run`, and the caller must know in advance what to load."),
    ]
    rtt = m.rtts[0] if m.rtts else None
    writes = [op for op in WRITE_OPERATIONS if op in m.measured]
    if rtt is None or not writes:
        return blocks + [Paragraph(f"Round trips per write operation: {NOT_MEASURED}.")]
    columns = [(mode, field) for mode in m.modes if mode != "direct"
               for field in ("round_trips", "statements")] + [("direct", "statements")]
    rows = []
    for op in writes:
        scale = m.reference_scale(op)
        row = [f"`{m.label(op, scale)}`"]
        for mode, field in columns:
            s = m.stat(op, mode, rtt, scale)
            row.append(NOT_MEASURED if s is None else fmt_count(s[field]))
        rows.append(row)
    blocks.append(Paragraph(f"Measured cost of each write operation at {fmt_rtt(rtt)} ms RTT "
                            "(means per call):"))
    blocks.append(Table(["operation", *(f"{mode} {field.replace('_', ' ')}"
                                        for mode, field in columns)], rows))
    trips = [m.value("round_trips", op, "proxy", rtt, m.reference_scale(op)) for op in writes]
    trips = [t for t in trips if t is not None]
    if trips:
        blocks.append(Paragraph(
            f"Through the proxy the write operations took {fmt_count(min(trips))} to "
            f"{fmt_count(max(trips))} HTTP round trips per call (statements whose results are "
            "not needed are pipelined into one request at flush); each round trip costs one "
            "RTT."))
    blocks.append(Paragraph(statement_difference(m, rtt)))
    return blocks


def _signed_range(values: Iterable[float]) -> str:
    """``+1``, or ``+0 to +2`` when the values differ."""
    found = sorted(set(values))
    ends = found[:1] if len(found) == 1 else [found[0], found[-1]]
    return " to ".join(f"{v:+.0f}" if v == round(v) else f"{v:+.1f}" for v in ends)


def statement_difference(m: Measurements, rtt: float) -> str:
    """Why the logical API runs a different number of statements than direct, computed."""
    extra: dict[str, float] = {}
    for op in m.measured:
        scale = m.reference_scale(op)
        logical = m.value("statements", op, "logical", rtt, scale)
        direct = m.value("statements", op, "direct", rtt, scale)
        if logical is not None and direct is not None:
            extra[op] = logical - direct
    if not extra:
        return f"Statements, logical against direct: {NOT_MEASURED}."
    writes = {op: d for op, d in extra.items() if op in WRITE_OPERATIONS}
    reads = {op: d for op, d in extra.items() if op not in WRITE_OPERATIONS}
    parts = []
    if writes:
        parts.append(f"{_signed_range(writes.values())} for the "
                     f"{plural(len(writes), 'write operation')}")
    if reads:
        parts.append(f"{_signed_range(reads.values())} for the "
                     f"{plural(len(reads), 'read operation')}")
    text = "Statements per call, logical API minus direct: " + " and ".join(parts) + ". "
    if writes and all(d > 0 for d in writes.values()) and all(d == 0 for d in reads.values()):
        text += ("The difference is the call's idempotency record: every logical call carries "
                 "an idempotency key, and a call that wrote inserts its outcome into the "
                 "server's outcome table through the operation's own session, in its "
                 "transaction, where it is counted, so a retried call is answered from the "
                 "record instead of running twice. Reads write nothing and record nothing. A "
                 "proxy commit that wrote records its answer in its transaction too, but the "
                 "server writes that row on the raw connection next to the COMMIT and does not "
                 "count it as a statement; direct mode records nothing.")
    elif all(d == 0 for d in extra.values()):
        text += "The logical API runs exactly the operation's statements."
    else:
        text += ("Besides the operation's own statements the logical server runs the "
                 "statements of its idempotency record for calls that wrote.")
    return text


def _serialization_summary(byte_ratios: list[float], shares: dict[str, list[float]]) -> str:
    summary = []
    if byte_ratios:
        summary.append(f"The proxy moved {fmt_ratio(min(byte_ratios))} to "
                       f"{fmt_ratio(max(byte_ratios))} the bytes of the logical API per call "
                       f"(median {fmt_ratio(median(byte_ratios))}).")
    for mode, values in shares.items():
        if values:
            summary.append(f"The server's share of {mode} latency ranged from "
                           f"{fmt_percent(min(values))} to {fmt_percent(max(values))} "
                           f"(median {fmt_percent(median(values))}).")
    return " ".join(summary) or f"Bytes and server time: {NOT_MEASURED}."


def _answer_serialization(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(3, "(b) What does serialization cost?")]
    if not m.rtts or not m.measured:
        return blocks + [Paragraph(f"Serialization cost: {NOT_MEASURED}.")]
    rtt = m.rtts[0]
    rows = []
    byte_ratios: list[float] = []
    shares: dict[str, list[float]] = {"proxy": [], "logical": []}
    for op in m.measured:
        scale = m.reference_scale(op)
        proxy, logical = m.stat(op, "proxy", rtt, scale), m.stat(op, "logical", rtt, scale)
        row = [f"`{m.label(op, scale)}`",
               fmt_bytes(http_bytes(proxy)) if proxy else NOT_MEASURED,
               fmt_bytes(http_bytes(logical)) if logical else NOT_MEASURED]
        value = ratio(http_bytes(proxy), http_bytes(logical))
        if value is not None:
            byte_ratios.append(value)
        row.append(fmt_ratio(value))
        for mode, s in (("proxy", proxy), ("logical", logical)):
            share = None if s is None else ratio(s["server_s"], s["mean"])
            if share is not None:
                shares[mode].append(share)
            row.append(fmt_percent(share))
        rows.append(row)
    blocks.append(Paragraph(
        f"Bytes per call and the share of the latency spent inside the server (server time ÷ "
        f"mean latency) at {fmt_rtt(rtt)} ms RTT. Values travel as typed JSON in both modes; "
        "the rest of each call's time is client-side work (ORM, encoding, decoding), HTTP "
        "and the network. Encoding time itself is not timed separately: not measured."))
    blocks.append(Table(["operation", "proxy bytes", "logical bytes", "proxy ÷ logical",
                         "proxy server share", "logical server share"], rows))
    blocks.append(Paragraph(_serialization_summary(byte_ratios, shares)))
    return blocks


def _answer_few_hundred_rows(m: Measurements) -> list[Block]:
    blocks: list[Block] = [Heading(3, "(c) Is it slower for operations touching a few hundred "
                                      "rows?")]
    scaled = [op for op in SCALED_OPERATIONS if op in m.measured]
    if not scaled:
        return blocks + [Paragraph(f"Scaled operations: {NOT_MEASURED}.")]
    largest = max(max(m.scales(op)) for op in scaled)
    if largest < FEW_HUNDRED:
        blocks.append(Paragraph(
            f"The largest scale measured is {largest} tasks per DAG, short of \"a few hundred "
            "rows\"; the numbers below are the closest this run measured."))
    rows: list[list[str]] = []
    versus: list[float] = []
    for op in scaled:
        if largest not in m.scales(op):
            rows.append([f"`{op}`", DASH] + [NOT_MEASURED] * 6)
            continue
        for rtt in m.rtts:
            p50s = {mode: m.interval("p50", op, mode, rtt, largest) for mode in MODES}
            versus_logical = m.ratio_interval(op, "proxy", "logical", rtt, largest)
            rows.append([f"`{op}`", fmt_rtt(rtt), *(fmt_ms_ci(p50s[mode]) for mode in MODES),
                         fmt_ratio_ci(versus_logical),
                         fmt_ratio_ci(m.ratio_interval(op, "proxy", "direct", rtt, largest)),
                         fmt_count(m.value("round_trips", op, "proxy", rtt, largest))])
            if versus_logical is not None:
                versus.append(versus_logical.estimate)
    blocks.append(Paragraph(f"At {largest} tasks per DAG (one row per task instance), p50 "
                            "latency in ms, each with its 95% bootstrap interval:"))
    blocks.append(Table(["operation", "RTT (ms)", "direct", "proxy", "logical",
                         "proxy ÷ logical", "proxy ÷ direct", "proxy round trips"], rows))
    if versus:
        slower, worst = sum(v > 1 for v in versus), max(versus)
        blocks.append(Paragraph(
            f"The proxy was slower than the logical API in {slower} of {len(versus)} "
            f"(operation, RTT) cells at this scale"
            + (f", by up to {fmt_ratio(worst)}." if worst > 1 else ".")))
    return blocks


def _answer_transactions(m: Measurements) -> list[Block]:
    blocks: list[Block] = [
        Heading(3, "(d) Transaction integrity"),
        Paragraph(
            "Both remote modes run one database transaction per operation: the logical API "
            "runs the function inside one transaction on the server; the proxy opens a "
            "server-held transaction with the operation's first statement and commits it at "
            "the end, so the operation is exactly as atomic as in direct mode. What differs is "
            "how long that transaction stays open: through the proxy it spans the client's "
            "round trips, so its locks are held while the network and the client work. "
            "Transaction-open time, proxy ÷ logical (mean per call):"),
        ratio_table(m, "proxy", "logical", "txn_s"),
        Paragraph("Proxy ÷ direct, transaction-open time:"),
        ratio_table(m, "proxy", "direct", "txn_s"),
        Paragraph(
            "That the same script of operations leaves identical database contents in every "
            "mode is checked by the test suite (`tests/bench/test_workload_modes.py`), not by this "
            "run: not measured here."),
    ]
    if m.backend == "sqlite":
        blocks.append(Paragraph("On SQLite a writing transaction holds the database-wide write "
                                "lock, so a longer transaction blocks every other writer."))
    return blocks


def _answer_one_place(m: Measurements) -> list[Block]:
    per_mode = {mode: [op for op in m.measured if mode in m.modes_of(op)] for mode in MODES}
    everywhere = [op for op in m.measured if len(m.modes_of(op)) == len(MODES)]
    partial = [op for op in m.measured if op not in everywhere]
    counts = ", ".join(f"{mode} {len(ops)}" for mode, ops in per_mode.items())
    text = (f"All three modes ran the very same operation functions: {len(everywhere)} "
            f"operations were measured in all three modes ({listing(everywhere)}). "
            f"Operations per mode: {counts}.")
    if partial:
        text += f" Measured in some modes only: {listing(partial)}."
    return [
        Heading(3, "(e) What does keeping the logic in one place cost?"),
        Paragraph(text),
        Paragraph("Neither remote mode needed a second copy of any operation: the proxy swaps "
                  "only the session factory; the logical API needs one decorator per function "
                  "and arguments and results that encode as typed JSON or detached instances. "
                  "The development effort of either approach is not measured."),
    ]


def answers_section(m: Measurements) -> list[Block]:
    """Heading and the five answers, each with the measurements behind it."""
    return [Heading(2, "Answers to the seed thread's questions"), *_answer_returns(m),
            *_answer_serialization(m), *_answer_few_hundred_rows(m), *_answer_transactions(m),
            *_answer_one_place(m)]
