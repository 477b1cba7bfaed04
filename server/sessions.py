"""Session pooling: one database connection held for the life of a client connection.

By default the server pools connections per transaction (PgBouncer's
``pool_mode = transaction``, :mod:`session_proxy_server.leases`): each
transaction leases a pooled connection whose session is reset when it ends,
so temporary tables and settings last one transaction.  A server started
with ``--session-pooling`` also offers PgBouncer's ``pool_mode = session``
to the clients that ask (URL option ``pooling=session``): ``POST
/v1/sessions`` checks a connection out of the pool and holds it as a
:class:`HeldSession` until the client connection closes (``DELETE
/v1/sessions/<id>``).  Every transaction of that client connection runs on
it (:meth:`session_proxy_server.leases.LeaseRegistry.open` with
``session=``), and nothing of the session is reset in between.

The rules:

- a session belongs to the (subject, role) that opened it; any other caller
  presenting its id is told it is unknown, exactly as for an id that never
  existed;
- sessions are capped in all (``--max-sessions``, 503 ``too_many_sessions``)
  and per subject (``--max-transactions-per-subject``, 429), and hold
  connections of their own beside the transaction pool;
- a session with no open transaction unused for ``--session-idle-seconds``
  is closed by the reaper; its id is remembered for a while, so its client
  hears ``session_closed`` saying why rather than "unknown";
- a session whose connection was dropped (a statement stopped by the
  watchdog, a rollback that failed) is closed too, with that reason;
- a closed session's connection goes back to the shared pool only after
  the backend's session reset (:meth:`Backend.reset_session
  <session_proxy_server.backends.base.Backend.reset_session>`), exactly as
  a transaction lease's does; if the reset fails the connection is dropped.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from session_proxy.wire import protocol

from . import after_response, database
from .leases import Lease, LeaseError, LeaseRegistry

log = logging.getLogger("session_proxy.server")


class HeldSession:
    """One client connection's own database connection, held between transactions."""

    def __init__(
        self, session_id: str, connection: Any, owner: tuple[str, str], registry: SessionRegistry
    ) -> None:
        self.id = session_id
        #: The pooled connection (SQLAlchemy's fairy) held for the session.
        self.connection = connection
        #: (subject, role) of the caller that opened it.
        self.owner = owner
        self.registry = registry
        self.created = time.monotonic()
        self.last_used = self.created
        #: The transaction open on it, if any.
        self.lease: Lease | None = None
        #: Why the session was closed, once it was.
        self.closed: str | None = None
        #: The opening request's idempotency key (a retry gets the same session).
        self.open_key: str | None = None
        #: Guards :attr:`lease` and :attr:`closed` against the reaper.
        self.lock = threading.Lock()

    def begin(self, lease: Lease) -> None:
        """Make ``lease`` the session's transaction; raise if it cannot have one."""
        with self.lock:
            if self.closed is not None:
                raise self.registry.closed_error(self.id, self.closed)
            if self.lease is not None:
                raise LeaseError(
                    protocol.TRANSACTION_BUSY,
                    f"session {self.id[:8]}... has transaction {self.lease.id[:8]}... open "
                    "already; a client connection runs one transaction at a time",
                )
            self.lease = lease
            self.last_used = time.monotonic()

    def end(self, lease: Lease) -> None:
        """The session's transaction ended; close the session if its connection was lost."""
        with self.lock:
            if self.lease is lease:
                self.lease = None
            self.last_used = time.monotonic()
        if lease.lost is not None:
            self.registry.lost(self, lease.lost)

    def touch(self) -> None:
        """Restart the idle clock (the server calls it for requests that run statements:
        a request carrying only ``commit`` or ``rollback`` steps keeps no session)."""
        self.last_used = time.monotonic()


class SessionRegistry:
    """Held sessions by id, with caps, an idle reaper and the reset on close."""

    def __init__(
        self,
        leases: LeaseRegistry,
        enabled: bool,
        max_open: int,
        max_per_subject: int,
        idle_seconds: float,
        closed_memory_seconds: float,
    ) -> None:
        self.leases = leases
        self.enabled = enabled
        self.max_open = max_open
        self.max_per_subject = max_per_subject
        self.idle_seconds = idle_seconds
        self.closed_memory_seconds = closed_memory_seconds
        #: Sessions closed by the server (idle or lost) since start.
        self.closed_count = 0
        self._sessions: dict[str, HeldSession] = {}
        #: Ids the server closed: (forget-after time, why), oldest first.
        self._closed: OrderedDict[str, tuple[float, str]] = OrderedDict()
        #: (subject, role, idempotency key) of an opening request -> session id.
        self._opened_by: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- opening and finding -------------------------------------------------------

    def open(self, owner: tuple[str, str], key: str | None = None) -> tuple[HeldSession, bool]:
        """Hold a pooled connection for ``owner``; return it and whether it is new.

        A retry of the request that opened a session still open (same
        owner, same idempotency ``key``) gets that session again.
        """
        if not self.enabled:
            raise self._disabled_error()
        with self._lock:
            if key is not None:
                known = self._sessions.get(self._opened_by.get((*owner, key), ""))
                if known is not None:
                    return known, False
            if len(self._sessions) >= self.max_open:
                raise LeaseError(
                    protocol.TOO_MANY_SESSIONS,
                    f"server holds {self.max_open} sessions, its limit (--max-sessions); "
                    "retry shortly, or close idle connections",
                    retry_after=1,
                )
            held = sum(1 for other in self._sessions.values() if other.owner[0] == owner[0])
            if held >= self.max_per_subject:
                raise LeaseError(
                    protocol.SUBJECT_LIMIT,
                    f"subject {owner[0]!r} already holds {held} sessions, the limit per "
                    "subject; close a connection first",
                    retry_after=1,
                )
            tags = f"{self.leases.instance_tag}-{self.leases.boot_tag}"
            session_id = f"{tags}-{secrets.token_urlsafe(24)}"
            # Reserve the slot before the (possibly slow) checkout.
            self._sessions[session_id] = HeldSession(session_id, None, owner, self)
        try:
            connection = self.leases.engine.raw_connection()
        except BaseException:
            with self._lock:
                del self._sessions[session_id]
            raise
        session = self._sessions[session_id]
        session.connection = connection
        session.open_key = key
        with self._lock:
            if key is not None:
                self._opened_by[(*owner, key)] = session_id
        log.info("session %s... opened for subject %r", session_id[:8], owner[0])
        return session, True

    def find(self, session_id: str, owner: tuple[str, str]) -> HeldSession:
        """``owner``'s open session ``session_id``; raises :class:`LeaseError`."""
        if not self.enabled:
            raise self._disabled_error()
        self.leases.check_instance(session_id, "session")
        with self._lock:
            session = self._sessions.get(session_id)
            closed = self._closed.get(session_id)
        if session is not None and session.owner != owner:
            log.warning(
                "subject %r (role %r) presented session %s... of another caller",
                owner[0], owner[1], session_id[:8],
            )
            raise self._unknown_error(session_id)
        if session is None or session.connection is None:
            if closed is not None:
                raise self.closed_error(session_id, closed[1])
            raise self._unknown_error(session_id)
        return session

    @staticmethod
    def _disabled_error() -> LeaseError:
        return LeaseError(
            protocol.SESSIONS_DISABLED,
            "this server does not allow session pooling (the client asked for it "
            "with the URL option pooling=session); start the server with "
            "--session-pooling, or drop the option to pool per transaction",
        )

    @staticmethod
    def _unknown_error(session_id: str) -> LeaseError:
        return LeaseError(
            protocol.UNKNOWN_SESSION,
            f"session {session_id[:8]}... is not open on this server for this caller: "
            "it was closed, the server restarted, or another caller opened it",
        )

    def closed_error(self, session_id: str, why: str) -> LeaseError:
        """The 410 of a session the server closed, naming why."""
        return LeaseError(
            protocol.SESSION_CLOSED,
            f"session {session_id[:8]}... was closed by the server: {why}; its "
            "temporary tables and settings are gone; open a new connection",
        )

    # -- closing ----------------------------------------------------------------

    def close(self, session_id: str, owner: tuple[str, str]) -> None:
        """Close ``owner``'s session at its client's request.

        An open transaction is rolled back; the connection's session is
        reset and it goes back to the pool after the response is written.
        """
        session = self.find(session_id, owner)
        self._close(session, why=None, reset_after_response=True)

    def lost(self, session: HeldSession, why: str) -> None:
        """The session's connection was dropped: close it, remembering why."""
        self._close(session, why=f"its database connection was dropped: {why}", pooled=False)

    def _close(
        self,
        session: HeldSession,
        why: str | None,
        reset_after_response: bool = False,
        pooled: bool = True,
    ) -> None:
        """Close ``session``: ``why`` is None when its client asked; ``pooled``
        is False once its connection went back to the pool invalidated."""
        with session.lock:
            if session.closed is not None:
                return
            session.closed = why or "closed by its client"
            lease = session.lease
        if lease is not None:
            self._roll_back(lease)
        with self._lock:
            self._sessions.pop(session.id, None)
            if session.open_key is not None:
                self._opened_by.pop((*session.owner, session.open_key), None)
            if why is not None:
                self._closed[session.id] = (time.monotonic() + self.closed_memory_seconds, why)
                self.closed_count += 1
        if why is not None:
            log.info("session %s... closed: %s", session.id[:8], why)
        if not pooled or (lease is not None and lease.lost is not None):
            return  # the connection was invalidated: the pool has it back already
        if not (reset_after_response and after_response.defer(lambda: self._reset(session))):
            self._reset(session)

    def _roll_back(self, lease: Lease) -> None:
        """End the session's open transaction (its client is gone)."""
        if not lease.lock.acquire(timeout=self.leases.lock_wait_seconds):
            lease.invalidate("its transaction was busy when the session closed")
            return
        try:
            if not lease.ended:
                self.leases.expire(lease, "session closed")
        finally:
            lease.lock.release()

    def _reset(self, session: HeldSession) -> None:
        """Reset the session's connection and give it back to the pool (or drop it)."""
        connection = session.connection
        try:
            self.leases.backend.reset_session(
                connection.dbapi_connection,
                self.leases.statement_timeout_seconds,
                connection.info,
            )
            self.leases.resets_run += 1
            connection.info[database.RESET_DONE] = True
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "could not reset session %s...'s connection (%s: %s); discarding it",
                session.id[:8], type(exc).__name__, exc,
            )
            connection.invalidate()
        connection.close()

    # -- reaping ----------------------------------------------------------------

    def reap(self) -> int:
        """Close every session idle past its limit with no transaction open; how many."""
        now = time.monotonic()
        with self._lock:
            idle = [
                session for session in self._sessions.values()
                if session.connection is not None and session.lease is None
                and now - session.last_used > self.idle_seconds
            ]
            while self._closed and next(iter(self._closed.values()))[0] < now:
                self._closed.popitem(last=False)
        closed = 0
        for session in idle:
            with session.lock:
                still_idle = (
                    session.lease is None
                    and time.monotonic() - session.last_used > self.idle_seconds
                )
            if still_idle:
                self._close(
                    session, why=f"it was idle for more than {self.idle_seconds:g} s "
                    "(--session-idle-seconds)",
                )
                closed += 1
        return closed

    def start_reaper(self) -> None:
        """Run :meth:`reap` in a daemon thread until :meth:`shutdown`."""
        if self._reaper is not None or not self.enabled:
            return
        interval = min(1.0, max(self.idle_seconds / 4, 0.05))

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reap()
                except Exception:  # noqa: BLE001
                    log.exception("session reaper failed")

        self._reaper = threading.Thread(target=loop, name="session-reaper", daemon=True)
        self._reaper.start()

    def shutdown(self) -> None:
        """Stop the reaper; close every session (rolled back, reset, pooled)."""
        self._stop.set()
        with self._lock:
            sessions = [s for s in self._sessions.values() if s.connection is not None]
        for session in sessions:
            self._close(session, why="the server shut down")
