"""The report's "Reliability under load" section: throughput, tails, errors, invariants.

Everything comes from the results file's ``reliability`` entry, the document
:func:`session_proxy_bench.load.runner.run_load` returns (``session-proxy-bench load``
writes it; ``session-proxy-bench run --load-results`` embeds it): concurrent
clients through gunicorn and a relay that drops responses, each call's
latency and error kind, the relay's fault counts, and the transfer
invariants checked against the database afterwards.
"""

from __future__ import annotations

from typing import Any

from ..document import Block, Bullets, Heading, Paragraph, Table
from ..formatting import NOT_MEASURED, fmt, plural

LABELS = {
    "transfer.proxy": "transfer, ORM through the proxy",
    "transfer.logical": "transfer, logical call",
}
#: Fault kinds of the relay, as the report names them.
FAULT_NAMES = {
    "drop_response": "responses dropped (server did the work)",
    "reset": "requests reset (server never saw them)",
    "delay": "requests delayed",
}


def _label(kind: str) -> str:
    if kind in LABELS:
        return LABELS[kind]
    if kind.startswith("workload."):
        return f"workload `{kind.split('.', 1)[1]}` (proxy)"
    return kind


def _ms(latency: dict[str, Any] | None, key: str) -> str:
    return fmt(None if latency is None else latency.get(key))


def _share(part: float, whole: float) -> str:
    return NOT_MEASURED if not whole else f"{100 * part / whole:.2g}%"


def _ok(flag: bool) -> str:
    return "ok" if flag else "**VIOLATED**"


def _method(load: dict[str, Any]) -> Paragraph:
    c, env = load["config"], load.get("environment", {})
    ws = load.get("workload_seed")
    mix = ", ".join(f"`{kind}` {weight:g}" for kind, weight in c["mix"].items() if weight)
    faults = f"drops the response to {c['drop_rate']:.1%} of requests"
    if c.get("reset_rate"):
        faults += f" and resets {c['reset_rate']:.1%} before the server sees them"
    backend = f"{env.get('backend', 'an unrecorded backend')} {env.get('backend_version', '')}"
    return Paragraph(
        f"{c['clients']} concurrent clients ran for {c['seconds']:g} s against "
        f"{backend.strip()} through {env.get('server', 'gunicorn')}, behind a TCP relay that "
        f"{faults} (seeded, seed {c['seed']}). The clients are threads of one process "
        "sharing one proxy engine (pool of one connection per client), each logical client "
        f"with its own HTTP session; each call is drawn from the mix ({mix}). A transfer "
        "locks two of "
        f"{c['accounts']} accounts in id order, moves an amount and writes one ledger row "
        "under a key the client chose; the ledger's key is not unique, so a write applied "
        "twice stays visible. A transfer is **acknowledged** when its commit or logical call "
        "returned normally. "
        + (f"The workload's operations run on its seed of {ws['dags']} DAGs with "
           f"{ws['runs_per_dag']} runs of {ws['tasks_per_dag']} tasks, spread over the clients "
           "(one DAG per client modulo the DAG count). " if ws else "")
        + "After the run, and once the server held no open transaction, "
        "the tables were read directly: the sum of balances must be unchanged, every "
        "acknowledged key must be in the ledger exactly once, no key twice, and every "
        "balance must equal its initial value plus incoming minus outgoing ledger amounts. "
        "Latency percentiles are over calls that succeeded; throughput counts every call "
        f"over the whole run ({fmt(load.get('duration_s'))} s, the calls still running at "
        "the deadline included).")


def _summary(load: dict[str, Any]) -> Table:
    lat = load.get("latency_ms")
    rows = [
        ["calls", f"{load['ops']} ({load['ok']} succeeded, {load['errors']} failed)"],
        ["throughput, all calls", f"{fmt(load.get('throughput'))} /s"],
        ["throughput, succeeded calls", f"{fmt(load.get('throughput_ok'))} /s"],
        ["latency p50 / p95 / p99", f"{_ms(lat, 'p50')} / {_ms(lat, 'p95')} / "
                                    f"{_ms(lat, 'p99')} ms"],
        ["slowest successful call", f"{_ms(lat, 'max')} ms"],
        ["failed calls", f"{load['errors']} ({_share(load['errors'], load['ops'])} of calls)"],
    ]
    return Table(["measure", "value"], rows)


def _per_kind(load: dict[str, Any]) -> Table:
    rows = []
    for kind, s in load.get("per_kind", {}).items():
        lat = s.get("latency_ms")
        rows.append([_label(kind), str(s["ops"]), str(s["errors"]),
                     fmt(s.get("throughput")), _ms(lat, "p50"), _ms(lat, "p95"),
                     _ms(lat, "p99")])
    return Table(["kind", "calls", "failed", "calls/s", "p50 ms", "p95 ms", "p99 ms"], rows)


def _errors(load: dict[str, Any]) -> list[Block]:
    errors: dict[str, int] = load.get("errors_by_kind") or {}
    if not errors:
        return [Paragraph("No call failed.")]
    rows = []
    for error, count in errors.items():
        kinds = [_label(kind) for kind, s in load.get("per_kind", {}).items()
                 if (s.get("errors_by_kind") or {}).get(error)]
        sample = (load.get("error_samples") or {}).get(error) or [""]
        rows.append([f"`{error}`", str(count), _share(count, load["ops"]),
                     ", ".join(kinds), sample[0]])
    return [Table(["error", "calls", "share of calls", "in", "first message"], rows)]


def _faults(load: dict[str, Any]) -> Table:
    relay = load.get("relay") or {}
    requests = relay.get("requests", 0)
    rows = [["requests through the relay", str(requests), ""]]
    for kind, name in FAULT_NAMES.items():
        count = relay.get(kind, 0)
        rows.append([name, str(count), _share(count, requests)])
    retries = load.get("client_retries") or {}
    for side in ("proxy", "logical"):
        value = retries.get(side)
        rows.append([f"client retries ({side})",
                     "not counted by this client" if value is None else str(value), ""])
    metrics = (load.get("server_metrics") or {})
    counters = metrics.get("counters") or {}
    for name, label in (("session_proxy_lease_expiries_total",
                         "server: transactions rolled back at lease end"),
                        ("session_proxy_replayed_total",
                         "server: replayed answers to retried requests")):
        if name in counters:
            rows.append([label, f"{counters[name]:.0f}", ""])
    statuses = metrics.get("requests_by_status") or {}
    if statuses:
        rows.append(["server: responses by HTTP status",
                     ", ".join(f"{status}: {n}" for status, n in statuses.items()), ""])
    return Table(["fault or counter", "count", "share of requests"], rows)


def _invariants(inv: dict[str, Any]) -> Table:
    rows = [
        ["sum of balances", f"expected {inv['total_expected']}, found {inv['total_actual']}",
         _ok(inv["sum_ok"])],
        ["acknowledged transfers in the ledger",
         f"{inv['acknowledged_present']} of {inv['acknowledged']} "
         f"({inv['acknowledged_missing_count']} missing)",
         _ok(inv["acknowledged_missing_count"] == 0)],
        ["keys in the ledger more than once", str(inv["duplicated_count"]),
         _ok(inv["duplicated_count"] == 0)],
        ["ledger rows with a key no client tried", str(inv["unknown_present_count"]),
         _ok(inv["unknown_present_count"] == 0)],
        ["balances equal initial + incoming − outgoing",
         f"{inv['accounts'] - inv['ledger_mismatch_count'] - len(inv['accounts_missing'])} "
         f"of {inv['accounts']} accounts", _ok(inv["ledger_consistent"]
                                               and not inv["accounts_missing"])],
        ["transfers whose call raised (not a violation)",
         f"{inv['unacknowledged']}: {inv['unacknowledged_present']} applied, "
         f"{inv['unacknowledged_absent']} not", "–"],
        ["**violations**", f"**{inv['violations']}**", _ok(inv["violations"] == 0)],
    ]
    return Table(["check", "result", "status"], rows)


def _findings(load: dict[str, Any]) -> Bullets:
    inv, c = load["invariants"], load["config"]
    items = []
    if inv["violations"] == 0:
        items.append(
            f"**No violation.** {plural(inv['acknowledged'], 'acknowledged transfer')}, "
            f"{inv['acknowledged_missing_count']} missing, {inv['duplicated_count']} "
            f"duplicated; the sum of balances stayed {inv['total_actual']} and every "
            "balance agrees with the ledger.")
    else:
        parts = []
        if inv["acknowledged_missing_count"]:
            parts.append(f"{inv['acknowledged_missing_count']} acknowledged transfers missing "
                         f"(e.g. {', '.join(inv['acknowledged_missing'][:3])})")
        if inv["duplicated_count"]:
            parts.append(f"{inv['duplicated_count']} keys applied more than once (e.g. "
                         + ", ".join(f"{k} ×{n}" for k, n in inv["duplicated_keys"][:3]) + ")")
        if inv["unknown_present_count"]:
            parts.append(f"{inv['unknown_present_count']} ledger rows with unknown keys")
        if not inv["sum_ok"]:
            parts.append(f"sum of balances {inv['total_actual']} instead of "
                         f"{inv['total_expected']}")
        if inv["ledger_mismatch_count"]:
            parts.append(f"{inv['ledger_mismatch_count']} balances disagree with the ledger")
        if inv["accounts_missing"]:
            parts.append(f"{len(inv['accounts_missing'])} accounts missing")
        items.append(f"**{plural(inv['violations'], 'invariant violation')}:** "
                     + "; ".join(parts) + ".")
    relay = load.get("relay") or {}
    dropped = relay.get("drop_response", 0) + relay.get("reset", 0)
    retries = [v for v in (load.get("client_retries") or {}).values() if v is not None]
    retry_text = (f"the clients retried {sum(retries)} requests on their own"
                  if retries and sum(retries) else
                  "the clients retried nothing (or do not count retries), so every fault "
                  "reached the caller as an error")
    items.append(
        f"The relay dropped or reset {dropped} of {relay.get('requests', 0)} requests "
        f"({_share(dropped, relay.get('requests', 0))}); {load['errors']} of {load['ops']} "
        f"calls failed ({_share(load['errors'], load['ops'])}); {retry_text}.")
    if inv["unacknowledged"]:
        items.append(
            f"Of {plural(inv['unacknowledged'], 'transfer')} whose call raised, "
            f"{inv['unacknowledged_present']} had been applied anyway (the answer was lost "
            f"after the commit) and {inv['unacknowledged_absent']} had not: a caller that "
            "sees the error cannot tell which without looking its key up.")
    lat = load.get("latency_ms") or {}
    expiries = ((load.get("server_metrics") or {}).get("counters") or {}).get(
        "session_proxy_lease_expiries_total")
    if lat.get("p99") is not None and lat.get("p50"):
        text = (f"p99 latency was {fmt(lat['p99'])} ms against a p50 of {fmt(lat['p50'])} ms "
                f"({lat['p99'] / lat['p50']:.0f}×).")
        if expiries and lat["p99"] >= c["lease_seconds"] * 1000 / 2:
            text += (f" The server rolled back {expiries:.0f} transactions at the end of their "
                     f"{c['lease_seconds']:g} s lease: a response lost in the middle of a "
                     "transaction leaves it open with its row locks until the lease ends, and "
                     "the transfers that need those accounts wait for it.")
        items.append(text)
    kinds = load.get("per_kind") or {}
    timed = [(s["latency_ms"]["p99"], kind) for kind, s in kinds.items()
             if (s.get("latency_ms") or {}).get("p99") is not None]
    if len(timed) > 1:
        p99, slowest = max(timed)
        items.append(f"The slowest kind of call at p99 was {_label(slowest)}: {fmt(p99)} ms "
                     f"(p50 {_ms(kinds[slowest].get('latency_ms'), 'p50')} ms).")
    proxy, logical = kinds.get("transfer.proxy"), kinds.get("transfer.logical")
    if proxy and logical:
        items.append(
            f"The same transfer ran {fmt(proxy.get('throughput_ok'))} times per second as ORM "
            f"statements through the proxy (p99 {_ms(proxy.get('latency_ms'), 'p99')} ms) and "
            f"{fmt(logical.get('throughput_ok'))} times per second as one logical call (p99 "
            f"{_ms(logical.get('latency_ms'), 'p99')} ms), with weights "
            f"{c['mix'].get('transfer.proxy', 0):g} and {c['mix'].get('transfer.logical', 0):g}"
            " in the mix.")
    return Bullets(items)


def reliability_section(results: dict[str, Any]) -> list[Block]:
    """Heading, method, measurements, fault counts, invariant check and findings."""
    load = results.get("reliability")
    heading = Heading(2, "Reliability under load")
    if not load:
        return [heading, Paragraph(
            "Not part of this run. The load run is its own command, since it needs a "
            "networked database and minutes of concurrent clients: `session-proxy-bench load "
            "--out load.json` runs it (clients through gunicorn and a relay that drops "
            "responses, then an invariant check of every acknowledged write), and `run "
            "--load-results load.json` embeds its result here.")]
    return [
        heading, _method(load), _summary(load),
        Heading(3, "By kind of call"), _per_kind(load),
        Heading(3, "Errors by kind"), *_errors(load),
        Heading(3, "Faults and retries"), _faults(load),
        Heading(3, "Invariant check"), _invariants(load["invariants"]),
        Heading(3, "Findings"), _findings(load),
    ]
