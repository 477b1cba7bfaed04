"""The measurements behind issue 16's Targets that the floors and probes do not give.

:func:`measure_targets` runs once per benchmark, at 0 ms RTT, against the
benchmark's own server (a :class:`~session_proxy_server.testing.ServerProcess`,
which knows its pid) and returns the raw numbers the report's Targets
section computes its rows from (the ``"targets"`` entry of the results):

- ``server_cpu``: the server process's ``utime + stime`` (``/proc/<pid>/stat``)
  around ``requests`` one-statement pipeline requests (``SELECT 1`` in an open
  transaction, one keep-alive connection, HTTPS when the server serves it;
  :mod:`session_proxy_bench.server_profile`);
- ``client_cpu``: :func:`time.process_time` of this process per one-row
  SELECT in an open transaction, through the proxy and through direct
  SQLAlchemy, in interleaved rounds (:mod:`session_proxy_bench.client_profile`);
- ``db_round_trips``: database round trips per transaction (one-row SELECT +
  COMMIT), counted by a :class:`~session_proxy_bench.relay.Relay` (0 ms)
  between a second server and the database and between direct SQLAlchemy
  and the database; on SQLite ``{"applicable": False}`` (in-process, no
  round trips);
- ``process_throughput``: one-row read transactions per second with
  ``processes`` client processes, proxy and direct
  (:mod:`session_proxy_bench.process_throughput`).

The one-row SELECT in an open transaction, proxy against direct, is a floor
(``proxy_select_txn`` against ``db_select_1``), sampled interleaved with the others.
"""

from __future__ import annotations

import statistics
from typing import Any

import sqlalchemy as sa

import session_proxy
from session_proxy_server.testing import ServerProcess

from .client_profile import measure as measure_client_cpu
from .client_profile import prepare as prepare_client_table
from .process_throughput import make_engine, prepare_table, process_throughput, read_transaction
from .processes import cpu_seconds
from .relay import Relay
from .server_profile import run_requests

SERVER_REQUESTS = 1000
CLIENT_STATEMENTS = 200
CLIENT_ROUNDS = 5
ROUND_TRIP_TRANSACTIONS = 3
PROCESSES = 4


def server_cpu(server: ServerProcess, requests: int = SERVER_REQUESTS) -> dict[str, Any]:
    """Server CPU around ``requests`` one-statement pipeline requests."""
    run_requests(server, 100)  # warm-up: imports, caches, the pool
    pid = server.process.pid
    before = cpu_seconds(pid)
    run_requests(server, requests)
    spent = cpu_seconds(pid) - before
    # run_requests adds a BEGIN request and a COMMIT request around the statements.
    return {"pid": pid, "requests": requests + 2, "cpu_s": spent,
            "per_request_s": spent / (requests + 2)}


def client_cpu(db_url: str, server: ServerProcess, statements: int = CLIENT_STATEMENTS,
               rounds: int = CLIENT_ROUNDS) -> dict[str, Any]:
    """Client CPU per one-row SELECT in an open transaction, proxy and direct."""
    prepare_client_table(db_url)
    engines = {"direct": sa.create_engine(db_url),
               "proxy": session_proxy.create_engine(server.url, token=server.token,
                                                    verify=server.verify)}
    try:
        samples = measure_client_cpu(engines, statements, rounds)
    finally:
        for engine in engines.values():
            engine.dispose()
    return {"statements": statements, "rounds": rounds,
            "direct_s": samples["direct"], "proxy_s": samples["proxy"],
            "direct_p50_s": statistics.median(samples["direct"]),
            "proxy_p50_s": statistics.median(samples["proxy"])}


def _turns(engine: sa.Engine, relay: Relay, transactions: int) -> list[int]:
    read_transaction(engine)  # warm-up: connections made, pools filled
    read_transaction(engine)
    counts = []
    for _ in range(transactions):
        before = relay.settled_turns()
        read_transaction(engine)
        counts.append(relay.settled_turns() - before)
    return counts


def _through(relay: Relay, db_url: str) -> str:
    url = sa.engine.make_url(db_url).set(host="127.0.0.1", port=relay.port)
    return url.render_as_string(hide_password=False)


def db_round_trips(db_url: str, transactions: int = ROUND_TRIP_TRANSACTIONS) -> dict[str, Any]:
    """Database turns per one-row read transaction, proxied and direct."""
    url = sa.engine.make_url(db_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"applicable": False, "reason": "SQLite runs in-process: no round trips"}
    port = url.port or {"postgresql": 5432, "mysql": 3306}[backend]
    with Relay(port, 0.0, target_host=url.host or "127.0.0.1") as relay:
        direct = make_engine("direct", _through(relay, db_url), None)
        try:
            direct_turns = _turns(direct, relay, transactions)
        finally:
            direct.dispose()
    with Relay(port, 0.0, target_host=url.host or "127.0.0.1") as relay:
        with ServerProcess(_through(relay, db_url)) as server:
            proxy = make_engine("proxy", server.url, server.token)
            try:
                proxy_turns = _turns(proxy, relay, transactions)
            finally:
                proxy.dispose()
    return {"applicable": True, "transaction": "one-row SELECT + COMMIT",
            "direct": direct_turns, "proxy": proxy_turns}


def measure_targets(db_url: str, server: ServerProcess, throughput_seconds: float,
                    processes: int = PROCESSES) -> dict[str, Any]:
    """Every raw number of the ``"targets"`` entry (see the module docstring)."""
    direct = sa.create_engine(db_url)
    try:
        prepare_table(direct)
    finally:
        direct.dispose()
    found: dict[str, Any] = {
        "server_cpu": server_cpu(server),
        "client_cpu": client_cpu(db_url, server),
        "db_round_trips": db_round_trips(db_url),
    }
    runs = {mode: process_throughput(mode, url, server.token, processes, throughput_seconds,
                                     server.verify)
            for mode, url in (("direct", db_url), ("proxy", server.url))}
    found["process_throughput"] = {"processes": processes, "rtt_ms": 0.0,
                                   "transaction": "one-row SELECT + COMMIT", **runs}
    return found
