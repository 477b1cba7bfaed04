"""Run the workload's operations in direct, proxy, proxy_best or logical mode.

A :class:`ModeRunner` switches the process-wide operation mode for the
duration of a ``with`` block and exposes the counters of that mode:

- ``direct``: operations run here on a session of a real engine;
- ``proxy``: operations run here on a plain ``Session`` of a proxy engine
  made by :func:`session_proxy.create_engine` with its defaults (flushes
  pipelined), whose statements go to the server;
- ``proxy_best``: the same with the two opt-ins an application may choose,
  ``proxy_pipeline_dml=True`` (Core DML queued too) and
  ``proxy_defer_flush_errors=True`` (explicit flushes queued too): the
  proxy at its best;
- ``logical``: each call goes to the server as one logical operation.

The proxy and logical clients take ``verify`` (a CA bundle path for a
server with a self-signed certificate, or True).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy.logical import Operation, RemoteClient, operation_mode
from session_proxy.stats import ProxyStats, StatsSnapshot

from . import operations

MODES = ("direct", "proxy", "proxy_best", "logical")
#: The modes whose statements go through a proxy engine.
PROXY_MODES = ("proxy", "proxy_best")
#: The opt-ins of ``proxy_best`` (engine options of :func:`session_proxy.create_engine`).
BEST_CASE_OPTIONS = {"proxy_pipeline_dml": True, "proxy_defer_flush_errors": True}


def _pool_args(db_url: str, pool_size: int) -> dict[str, Any]:
    if sa.engine.make_url(db_url).get_backend_name() == "sqlite":
        return {}
    return {"pool_size": pool_size, "max_overflow": 0}


class ModeRunner:
    """The engine or client of one mode, and its counters."""

    def __init__(self, mode: str, *, db_url: str | None = None, server_url: str | None = None,
                 token: str | None = None, verify: bool | str = True,
                 pool_size: int = 5) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.engine: sa.Engine | None = None
        self.client: RemoteClient | None = None
        self._direct_stats = ProxyStats()
        if mode == "direct":
            if db_url is None:
                raise ValueError("direct mode needs db_url")
            self.engine = sa.create_engine(db_url, **_pool_args(db_url, pool_size))
            self._measure_direct(self.engine)
        elif server_url is None:
            raise ValueError(f"{mode} mode needs server_url")
        elif mode in PROXY_MODES:
            # proxy_best: Core DML and explicit flushes pipelined too.  The
            # workload never catches errors from them, so its behaviour is
            # the same (tests/bench/test_workload_modes.py).
            options = BEST_CASE_OPTIONS if mode == "proxy_best" else {}
            self.engine = session_proxy.create_engine(
                server_url, token=token, verify=verify, pool_size=pool_size, max_overflow=0,
                **options,
            )
        else:
            self.client = RemoteClient(server_url, token=token, verify=verify)

        # A plain Session in both modes: the proxy engine pipelines every
        # session's flushes (session_proxy.session_events).
        self.session_factory = (
            sessionmaker(bind=self.engine) if self.engine is not None else None
        )

    @contextlib.contextmanager
    def active(self) -> Iterator[ModeRunner]:
        """Make operations called without a session run in this mode, process-wide."""
        if self.client is not None:
            with operation_mode(client=self.client):
                yield self
        else:
            with operation_mode(session_factory=self.session_factory):
                yield self

    def call(self, operation: Operation, *args: Any, **kwargs: Any) -> Any:
        """Run one operation in this mode, as its decorator would, without
        touching the process-wide mode (so threads can each use their own)."""
        if self.client is not None:
            return self.client.call(operation.name, args, kwargs)
        assert self.session_factory is not None
        return operation.run_in_transaction(self.session_factory, args, kwargs)

    def warm(self) -> None:
        """Connect and make one call, so no sample pays first-connect queries."""
        if self.engine is not None:
            with self.engine.connect():
                pass  # the dialect's first-connect queries
        self.call(operations.get_variable, "var_000")

    def _measure_direct(self, engine: sa.Engine) -> None:
        """Count statements and transaction-open time on the client side."""
        stats = self._direct_stats

        @event.listens_for(engine, "before_cursor_execute")
        def count(*args: Any) -> None:
            stats.add(statements=1)

        @event.listens_for(engine, "begin")
        def begin(conn: sa.Connection) -> None:
            conn.info["sp_txn_started"] = time.perf_counter()

        def end(conn: sa.Connection) -> None:
            started = conn.info.pop("sp_txn_started", None)
            if started is not None:
                stats.add(transaction_seconds=time.perf_counter() - started)

        event.listen(engine, "commit", end)
        event.listen(engine, "rollback", end)

    def snapshot(self) -> StatsSnapshot:
        """Counters so far; direct mode counts statements and transaction time only."""
        if self.client is not None:
            return self.client.stats.snapshot()
        if self.mode in PROXY_MODES:
            return session_proxy.stats(self.engine).snapshot()
        return self._direct_stats.snapshot()

    def close(self) -> None:
        """Release the engine or client."""
        if self.engine is not None:
            self.engine.dispose()
        if self.client is not None:
            self.client.close()
