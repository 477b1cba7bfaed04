"""Is the logical client as shipped better than AIP-44's client pattern?

Two ways to call the same logical operation (``get_dag_run``) on the same
server, measured side by side, call by call in alternating order:

- **shipped**: one :class:`~session_proxy.logical.RemoteClient` for every
  call: pooled keep-alive connections, its token sent again each time (the
  server's verdict cache then skips the signature check);
- **aip44**: what Airflow 2.10's internal API client did: for each call a
  freshly signed token (minted here with the issuing code the tests use,
  :func:`session_proxy_server.testing.issue`, so the server checks its
  signature in full) and a new HTTP client, so a new TCP connection (and
  TLS session, when the run's server speaks HTTPS).

The server is this measurement's own :class:`~session_proxy_server.testing.ServerProcess`
on the run's database (it must trust the key the tokens are minted with),
with TLS when the run's server uses it.  Each pattern goes through its own
:class:`~session_proxy_bench.relay.Relay` at each of the run's RTTs, which
charges a new connection its TCP handshake and counts the connections.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from session_proxy.logical import RemoteClient
from session_proxy_server.testing import ServerProcess, issue

from ..relay import Relay
from ..workload import OPERATIONS_MODULE
from ..workload import operations as ops
from . import Question, QuestionContext

KEY = "logical_vs_aip44"
PATTERNS = ("shipped", "aip44")


def _relayed_url(url: str, relay: Relay) -> str:
    return f"https://127.0.0.1:{relay.port}" if url.startswith("https:") else relay.url


def _measure_rtt(server: ServerProcess, rtt: float, samples: int) -> dict[str, Any]:
    args = (ops.get_dag_run.name, ("no such dag", "no such run"), {})
    with Relay(server.port, rtt) as shipped_relay, Relay(server.port, rtt) as aip44_relay:
        shipped_url = _relayed_url(server.url, shipped_relay)
        aip44_url = _relayed_url(server.url, aip44_relay)
        shipped = RemoteClient(shipped_url, token=server.token, verify=server.verify)

        def call_shipped() -> None:
            shipped.call(*args)

        def call_aip44() -> None:
            client = RemoteClient(aip44_url, token=issue(subject="aip44-worker"),
                                  verify=server.verify)
            try:
                client.call(*args)
            finally:
                client.close()

        calls = {"shipped": call_shipped, "aip44": call_aip44}
        latencies: dict[str, list[float]] = {p: [] for p in PATTERNS}
        try:
            for call in calls.values():
                call()  # warm: imports, the shipped client's connection
            connections_before = {"shipped": shipped_relay.connections,
                                  "aip44": aip44_relay.connections}
            for i in range(samples):
                for pattern in (PATTERNS if i % 2 == 0 else PATTERNS[::-1]):
                    started = time.perf_counter()
                    calls[pattern]()
                    latencies[pattern].append(time.perf_counter() - started)
            connections = {
                "shipped": shipped_relay.connections - connections_before["shipped"],
                "aip44": aip44_relay.connections - connections_before["aip44"],
            }
            # Including the warm-up call: the shipped client's one connection.
            connections_total = {"shipped": shipped_relay.connections,
                                 "aip44": aip44_relay.connections}
        finally:
            shipped.close()
    return {"rtt_ms": rtt * 1000, "calls": samples, "latency_s": latencies,
            "connections": connections, "connections_total": connections_total,
            "calls_total": samples + 1}


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Per-call latency of both patterns at each RTT, and the connections each opened."""
    samples = 15 if ctx.quick else 60
    tls = ctx.server_url.startswith("https:")
    with tempfile.TemporaryDirectory() as tls_dir, \
            ServerProcess(ctx.db_url, "--operations", OPERATIONS_MODULE,
                          tls_dir=Path(tls_dir) if tls else None) as server:
        by_rtt = [_measure_rtt(server, rtt, samples) for rtt in ctx.rtts]
    return {"tls": tls, "operation": "get_dag_run", "samples": samples, "rtts": by_rtt}


QUESTION = Question(
    key=KEY,
    asked_by="the project (AIP-44's client, as Airflow 2.10 shipped it)",
    title="Is the logical client as shipped better than AIP-44's?",
    measure=measure,
)
