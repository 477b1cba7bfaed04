"""The report's "Method" section: the three modes, the latency relay, the samples, the counters.

The text describes how :mod:`session_proxy_bench.runner` measures; only the sample
counts, the throughput mix and the SQLite wording depend on the results.
"""

from __future__ import annotations

from ..document import Block, Bullets, Heading, Paragraph
from ..formatting import NOT_MEASURED, listing, plural
from ..measurements import Measurements
from ..terms import BEST_MODE, THROUGHPUT_MIX


def method_section(m: Measurements) -> list[Block]:
    """Heading, the modes, the relay, the sampling and the counters recorded."""
    c = m.config
    sqlite = m.backend == "sqlite"
    handshake = bool(m.results.get("network", {}).get("relay_handshake"))
    mix = listing(THROUGHPUT_MIX) if THROUGHPUT_MIX else "a mix of light operations"
    return [
        Heading(2, "Method"),
        Paragraph(
            "Each workload operation is written once, as plain SQLAlchemy code taking a "
            "`session` (`benchmarks/workload/operations.py`), and the very same function "
            f"ran in {plural(len(m.modes), 'mode')}:"),
        Bullets([
            "**direct**: the application's code on a real engine and session. "
            + ("On SQLite the database is a file inside the client process, so direct mode "
               "has no network at all and no injected latency. " if sqlite else
               "The direct connection to the database goes through the same latency relay "
               "as the HTTP modes. ")
            + "This is the baseline without isolation.",
            "**proxy**: the same code on a `ProxySession`: every statement (ORM queries, "
            "loads, flush INSERT/UPDATE/DELETE, Core SQL) is shipped over HTTP to the "
            "session-proxy server, which executes it in a server-held transaction on its "
            "pooled connection. This is the design AIP-44 rejected without measuring it.",
            *(["**proxy_best**: the proxy with the two opt-ins an application may choose, "
               "`proxy_pipeline_dml=True` (Core INSERT/UPDATE/DELETE without RETURNING are "
               "queued until a result is needed) and `proxy_defer_flush_errors=True` (an "
               "explicit flush's writes wait too; their errors come from the next statement or "
               "the commit): the proxy's best case, shown beside its defaults."]
              if BEST_MODE in m.modes else []),
            "**logical**: one HTTP call per operation; the server runs the same function on "
            "a real session in one transaction and sends the result back. This is the "
            "design AIP-44 shipped (Airflow 2.7-2.10).",
        ]),
        Paragraph(
            "Latency is injected by a TCP relay on loopback between client and server"
            + ("" if sqlite else " (and between the direct-mode client and the database)")
            + ": it delays each direction by RTT/2, so every request/response exchange costs "
            "one RTT on top of loopback, while bytes in flight keep flowing (no bandwidth "
            "limit). RTT 0 means no relay."
            + (" A new connection also pays TCP's handshake: its first bytes wait one more "
               "RTT, so a request on a fresh connection costs two RTTs and one on a "
               "kept-alive connection one." if handshake else "")),
        Paragraph(
            f"For each operation, mode, RTT and tasks-per-DAG scale the runner made "
            f"{plural(c.get('warmup', NOT_MEASURED), 'unrecorded warm-up call')}, then "
            f"recorded {plural(c.get('samples', NOT_MEASURED), 'sample')}. Operations that "
            "change rows are preceded by an untimed prepare step on a direct connection that "
            "puts those rows back into their seeded state, so every sample does the same work "
            "in every mode. "
            f"The floors are {c.get('floor_samples', NOT_MEASURED)} samples each of a direct "
            "`SELECT 1` and a bare HTTP echo at each RTT. Throughput runs let N client threads "
            f"loop over {mix} for {c.get('throughput_seconds', NOT_MEASURED)} s per mode, "
            "RTT and client count."),
        Paragraph("Counters recorded with every sample:"),
        Bullets([
            "**round trips**: HTTP requests (none in direct mode);",
            "**statements**: SQL statements executed against the database;",
            "**bytes**: HTTP request plus response body bytes (direct mode's database wire "
            "traffic is not counted);",
            "**server time**: time the server spent handling the sample's requests;",
            "**transaction open**: time the database transaction stayed open, measured by "
            "the server in proxy and logical modes and from BEGIN to COMMIT on the client in "
            "direct mode. Locks taken by the transaction are held at least this long.",
        ]),
    ]
