"""Throughput of one-row read transactions with several client PROCESSES.

Threads in one Python process share one GIL, so they measure the client as
much as the server; separate processes, each with its own engine, do not.
:func:`process_throughput` starts ``processes`` workers (``spawn``: the
bench process runs relay threads and must not be forked), lets each make
its engine and run a warm-up transaction, then releases them all at once;
each runs ``BEGIN; SELECT v FROM bench_target WHERE id = 1; COMMIT`` in a
loop until the deadline and reports how many transactions it finished and
how many failed.  The mode's engine is a direct SQLAlchemy engine on the
database URL or :func:`session_proxy.create_engine` on the server URL: the
same client code, so the ratio is what the proxy costs.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import sqlalchemy as sa

import session_proxy

from .processes import join_or_kill

TABLE = "bench_target"
SELECT = sa.text(f"SELECT v FROM {TABLE} WHERE id = 1")
START_TIMEOUT = 60.0


def prepare_table(direct: sa.Engine) -> None:
    """Create ``bench_target`` with its one row."""
    with direct.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, v VARCHAR(20))"))
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (1, 'one')"))


def make_engine(mode: str, url: str, token: str | None, verify: bool | str = True) -> sa.Engine:
    """The ``direct`` or ``proxy`` engine on ``url`` (``verify``: the server's CA bundle)."""
    if mode == "proxy":
        return session_proxy.create_engine(url, token=token, verify=verify)
    return sa.create_engine(url)


def read_transaction(engine: sa.Engine) -> None:
    """One one-row read transaction."""
    with engine.begin() as conn:
        if conn.execute(SELECT).scalar() != "one":
            raise RuntimeError(f"{TABLE} lost its row")


def _worker(mode: str, url: str, token: str | None, verify: bool | str, ready: Any, go: Any,
            seconds: float, out: Any) -> None:
    engine = make_engine(mode, url, token, verify)
    done = errors = 0
    try:
        try:
            read_transaction(engine)  # connect, first-connect queries, warm caches
        finally:
            ready.release()  # a failed start is reported as no transactions, not a hang
        go.wait(START_TIMEOUT)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                read_transaction(engine)
                done += 1
            except Exception:  # noqa: BLE001 - counted
                errors += 1
    finally:
        engine.dispose()
        out.put((done, errors))


def process_throughput(mode: str, url: str, token: str | None, processes: int,
                       seconds: float, verify: bool | str = True) -> dict[str, Any]:
    """Run ``processes`` client processes for ``seconds``; their totals."""
    context = multiprocessing.get_context("spawn")
    ready, go, out = context.Semaphore(0), context.Event(), context.Queue()
    workers = [context.Process(target=_worker, args=(mode, url, token, verify, ready, go, seconds,
                                                     out),
                               daemon=True) for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            if not ready.acquire(timeout=START_TIMEOUT):
                raise RuntimeError(f"{mode}: a client process did not start")
        started = time.perf_counter()
        go.set()
        totals = [out.get(timeout=seconds + START_TIMEOUT) for _ in workers]
        elapsed = time.perf_counter() - started
    finally:
        go.set()
        join_or_kill(workers)
    transactions = sum(done for done, _ in totals)
    return {
        "mode": mode,
        "processes": processes,
        "seconds": elapsed,
        "transactions": transactions,
        "errors": sum(errors for _, errors in totals),
        "throughput": transactions / elapsed,
    }
