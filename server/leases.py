"""Server-held transactions: one pooled connection each, leased by idle time.

A :class:`Lease` is what a transaction id names: a connection checked out of
the server engine's pool, the server-side cursors opened on it, and the time
it was last used.  The :class:`LeaseRegistry` hands out unguessable ids, caps
how many leases are open, and runs a reaper thread that rolls back every
lease idle past its limit, which releases its row locks.  An expired id is
remembered for a while so its client hears "expired" rather than "unknown".
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy.engine import Engine

from session_proxy import protocol

from .drivers import reset_session

log = logging.getLogger("session_proxy.server")


class LeaseError(Exception):
    """A transaction id cannot be used; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class Lease:
    """One server-held transaction on one pooled connection."""

    def __init__(self, lease_id: str, connection: Any, options: dict[str, Any]) -> None:
        self.id = lease_id
        self.connection = connection
        self.options = options
        self.cursors: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.created = time.monotonic()
        self.last_used = self.created
        self.ended = False

    @property
    def dbapi_connection(self) -> Any:
        """The driver's own connection object."""
        return self.connection.dbapi_connection

    def touch(self) -> None:
        """Restart the idle clock."""
        self.last_used = time.monotonic()


class LeaseRegistry:
    """Open leases by id, with a cap and an idle reaper."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: float,
        max_open: int,
        expired_memory_seconds: float,
        lock_wait_seconds: float,
    ) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.max_open = max_open
        self.expired_memory_seconds = expired_memory_seconds
        self.lock_wait_seconds = lock_wait_seconds
        self.expired_count = 0
        self._leases: dict[str, Lease] = {}
        self._expired: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)

    # -- lifecycle of one lease ------------------------------------------------

    def open(self, options: dict[str, Any]) -> Lease:
        """Check out a connection, apply ``options`` and register a new lease.

        The caller holds the returned lease's lock.
        """
        with self._lock:
            if len(self._leases) >= self.max_open:
                raise LeaseError(
                    protocol.TOO_MANY_TRANSACTIONS,
                    f"server has {self.max_open} open transactions, its limit; "
                    "retry shortly",
                    retry_after=1,
                )
            lease_id = secrets.token_urlsafe(24)
            # Reserve the slot before the (possibly slow) checkout.
            self._leases[lease_id] = None  # type: ignore[assignment]
        try:
            connection = self.engine.raw_connection()
        except BaseException:
            with self._lock:
                del self._leases[lease_id]
            raise
        lease = Lease(lease_id, connection, options)
        lease.lock.acquire()
        try:
            self._apply_options(lease)
        except BaseException:
            lease.lock.release()
            self._discard(lease)
            raise
        with self._lock:
            self._leases[lease_id] = lease
        return lease

    def acquire(self, lease_id: str) -> Lease:
        """Find a lease by id and take its lock; raises :class:`LeaseError`."""
        with self._lock:
            lease = self._leases.get(lease_id)
            expired = lease_id in self._expired
        if lease is None:
            if expired:
                raise self._expired_error(lease_id)
            raise self._unknown_error(lease_id)
        if not lease.lock.acquire(timeout=self.lock_wait_seconds):
            raise LeaseError(
                protocol.TRANSACTION_BUSY,
                f"transaction {lease_id[:8]}... is in use by another request",
            )
        if lease.ended:
            lease.lock.release()
            with self._lock:
                expired = lease_id in self._expired
            if expired:
                raise self._expired_error(lease_id)
            raise self._unknown_error(lease_id)
        return lease

    def release(self, lease: Lease) -> None:
        """Let go of a lease's lock after a request, restarting its idle clock."""
        lease.touch()
        lease.lock.release()

    def end(self, lease: Lease) -> None:
        """Forget a lease whose transaction was committed or rolled back.

        The caller holds the lease's lock and still releases it afterwards.
        """
        self._discard(lease)

    def _discard(self, lease: Lease) -> None:
        lease.ended = True
        for cursor in lease.cursors.values():
            try:
                cursor.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        lease.cursors.clear()
        try:
            self._reset_options(lease)
            reset_session(lease.dbapi_connection, self.engine.dialect.driver)
        except Exception:  # noqa: BLE001
            log.warning("could not reset the connection's session; discarding connection")
            lease.connection.invalidate()
        # Returning the connection to the pool rolls back anything left open.
        lease.connection.close()
        with self._lock:
            self._leases.pop(lease.id, None)

    @staticmethod
    def _unknown_error(lease_id: str) -> LeaseError:
        return LeaseError(
            protocol.UNKNOWN_TRANSACTION,
            f"transaction {lease_id[:8]}... is not open on this server: it "
            "was committed or rolled back, or the server restarted",
        )

    def _expired_error(self, lease_id: str) -> LeaseError:
        return LeaseError(
            protocol.TRANSACTION_EXPIRED,
            f"transaction {lease_id[:8]}... expired after {self.lease_seconds:g} s "
            "idle; the server rolled it back and released its locks",
        )

    # -- connection options -------------------------------------------------

    def _apply_options(self, lease: Lease) -> None:
        dialect = self.engine.dialect
        dbapi_conn = lease.dbapi_connection
        level = lease.options.get("isolation_level")
        if level is not None:
            dialect.set_isolation_level(dbapi_conn, level)
        if lease.options.get("read_only"):
            dialect.set_readonly(dbapi_conn, True)
        if lease.options.get("deferrable"):
            dialect.set_deferrable(dbapi_conn, True)

    def _reset_options(self, lease: Lease) -> None:
        dialect = self.engine.dialect
        dbapi_conn = lease.dbapi_connection
        if lease.options.get("isolation_level") is not None:
            dbapi_conn.rollback()
            dialect.reset_isolation_level(dbapi_conn)
        if lease.options.get("read_only"):
            dialect.set_readonly(dbapi_conn, False)
        if lease.options.get("deferrable"):
            dialect.set_deferrable(dbapi_conn, False)

    # -- reaping ----------------------------------------------------------------

    def reap(self) -> int:
        """Roll back every lease idle past the limit; return how many."""
        now = time.monotonic()
        with self._lock:
            candidates = [
                lease
                for lease in self._leases.values()
                if lease is not None and now - lease.last_used > self.lease_seconds
            ]
            while self._expired and next(iter(self._expired.values())) < now:
                self._expired.popitem(last=False)
        reaped = 0
        for lease in candidates:
            if not lease.lock.acquire(blocking=False):
                continue  # a request is using it right now
            try:
                if lease.ended or time.monotonic() - lease.last_used <= self.lease_seconds:
                    continue
                with self._lock:
                    self._expired[lease.id] = time.monotonic() + self.expired_memory_seconds
                try:
                    lease.dbapi_connection.rollback()
                except Exception:  # noqa: BLE001
                    lease.connection.invalidate()
                self._discard(lease)
                self.expired_count += 1
                reaped += 1
                log.info("lease %s... expired and was rolled back", lease.id[:8])
            finally:
                lease.lock.release()
        return reaped

    def start_reaper(self) -> None:
        """Run :meth:`reap` in a daemon thread until :meth:`shutdown`."""
        if self._reaper is not None:
            return
        interval = min(1.0, max(self.lease_seconds / 4, 0.05))

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reap()
                except Exception:  # noqa: BLE001
                    log.exception("lease reaper failed")

        self._reaper = threading.Thread(target=loop, name="lease-reaper", daemon=True)
        self._reaper.start()

    def shutdown(self) -> None:
        """Stop the reaper and roll back every open lease."""
        self._stop.set()
        with self._lock:
            leases = [lease for lease in self._leases.values() if lease is not None]
        for lease in leases:
            if lease.lock.acquire(timeout=self.lock_wait_seconds):
                try:
                    if not lease.ended:
                        self._discard(lease)
                finally:
                    lease.lock.release()
