"""Counters of what a proxy engine sent and received.

Each proxy engine owns one :class:`ProxyStats`; read it with
:func:`session_proxy.stats` (``session_proxy.stats(engine).round_trips``).
Tests and benchmarks assert on these counts, never on time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator

_local = threading.local()


@contextlib.contextmanager
def background_requests() -> Iterator[None]:
    """Count this thread's round trips as ``background_round_trips`` while inside.

    For requests nobody waits for (:mod:`session_proxy.background`).
    """
    _local.background = True
    try:
        yield
    finally:
        _local.background = False


@dataclasses.dataclass
class StatsSnapshot:
    """A frozen copy of the counters at one moment; subtract two for a delta."""

    round_trips: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    statements: int = 0
    server_seconds: float = 0.0
    #: Time server-held transactions stayed open, summed over those that ended.
    transaction_seconds: float = 0.0
    #: Requests sent again after a lost response, a 503 or a busy transaction.
    retries: int = 0
    #: Responses the server answered from the record of an earlier attempt.
    replays: int = 0
    #: Requests nobody waited for (the COMMIT of a read-only transaction).
    background_round_trips: int = 0
    #: Of those, the ones that failed (logged; nothing was written).
    background_failures: int = 0

    def __sub__(self, other: StatsSnapshot) -> StatsSnapshot:
        return StatsSnapshot(
            *(getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self))
        )

    def __add__(self, other: StatsSnapshot) -> StatsSnapshot:
        return StatsSnapshot(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )


class ProxyStats:
    """Thread-safe running totals for one engine's transport."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = StatsSnapshot()

    def record(
        self,
        request_bytes: int,
        response_bytes: int,
        statements: int,
        server_seconds: float = 0.0,
        transaction_seconds: float = 0.0,
    ) -> None:
        """Count one HTTP round trip (a background one inside :func:`background_requests`)."""
        with self._lock:
            totals = self._totals
            if getattr(_local, "background", False):
                totals.background_round_trips += 1
            else:
                totals.round_trips += 1
            totals.request_bytes += request_bytes
            totals.response_bytes += response_bytes
            totals.statements += statements
            totals.server_seconds += server_seconds
            totals.transaction_seconds += transaction_seconds

    def add(self, **amounts: float) -> None:
        """Add to named counters without counting a round trip."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self._totals, name, getattr(self._totals, name) + amount)

    def snapshot(self) -> StatsSnapshot:
        """A copy of the current totals."""
        with self._lock:
            return dataclasses.replace(self._totals)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._totals = StatsSnapshot()

    def __getattr__(self, name: str) -> int | float:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.snapshot(), name)
