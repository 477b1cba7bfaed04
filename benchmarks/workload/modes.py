"""Run the workload's operations in direct, proxy or logical mode.

A :class:`ModeRunner` switches the process-wide operation mode for the
duration of a ``with`` block and exposes the counters of that mode:

- ``direct``: operations run here on a session of a real engine;
- ``proxy``: operations run here on a :class:`~session_proxy.ProxySession`
  whose statements go to the server;
- ``logical``: each call goes to the server as one logical operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy.logical import RemoteClient, operation_mode
from session_proxy.stats import StatsSnapshot

MODES = ("direct", "proxy", "logical")


class ModeRunner:
    """The engine or client of one mode, and its counters."""

    def __init__(self, mode: str, *, db_url: str | None = None, server_url: str | None = None,
                 token: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.engine: sa.Engine | None = None
        self.client: RemoteClient | None = None
        if mode == "direct":
            if db_url is None:
                raise ValueError("direct mode needs db_url")
            self.engine = sa.create_engine(db_url)
        elif server_url is None:
            raise ValueError(f"{mode} mode needs server_url")
        elif mode == "proxy":
            self.engine = session_proxy.create_engine(server_url, token=token)
        else:
            self.client = RemoteClient(server_url, token=token)

    @contextlib.contextmanager
    def active(self) -> Iterator[ModeRunner]:
        """Make operations called without a session run in this mode."""
        if self.client is not None:
            with operation_mode(client=self.client):
                yield self
            return
        assert self.engine is not None
        session_class = session_proxy.ProxySession if self.mode == "proxy" else sa.orm.Session
        factory = sessionmaker(class_=session_class, bind=self.engine)
        with operation_mode(session_factory=factory):
            yield self

    def snapshot(self) -> StatsSnapshot:
        """Counters so far (all zero in direct mode, which has no wire)."""
        if self.client is not None:
            return self.client.stats.snapshot()
        if self.mode == "proxy":
            return session_proxy.stats(self.engine).snapshot()
        return StatsSnapshot()

    def close(self) -> None:
        """Release the engine or client."""
        if self.engine is not None:
            self.engine.dispose()
        if self.client is not None:
            self.client.close()
