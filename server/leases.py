"""Server-held transactions: one pooled connection each, leased by idle time.

A :class:`Lease` is what a transaction id names: a connection checked out of
the server engine's pool, the server-side cursors opened on it, the caller
that opened it, and the time it was last used.  The :class:`LeaseRegistry`
hands out unguessable ids, caps how many leases are open in all and per
subject, and runs a reaper thread that rolls back every lease idle past its
limit or open past the longest transaction allowed, which releases its row
locks.  An expired id is remembered for a while so its client hears
"expired" rather than "unknown".

A lease belongs to the (subject, role) that opened it: any other caller
presenting its id is told the transaction is not open, exactly as for an id
that never existed, so ids cannot be probed.

Ids read ``INSTANCE-BOOT-RANDOM``: a tag of the server instance's name and
a tag of this process's start, so an instance can tell a client that its
transaction lives on another instance (``wrong_instance``), or died with an
earlier run of this one, rather than just "unknown".

A transaction that ended hands its connection back to the pool after the
session reset, which runs once the response is written (see
:mod:`session_proxy_server.after_response`), unless the commit did it in its
own round trip already (:attr:`Lease.session_clean`, PostgreSQL) or the
transaction may hold a session lock, which other sessions see at once
(:attr:`Lease.reset_before_answer`); the connection is back in the pool,
and can be leased again, only after the reset.

Under session pooling (:mod:`session_proxy_server.sessions`) a lease may
instead run on the connection a held session owns: it is not counted
against the pool caps (the session was, when it opened), and when it ends
the connection goes back to its session, not to the pool, with only the
lease's connection options undone: what the transaction left in the
session (temporary tables, settings) stays, as on a direct connection.

A lease also remembers the idempotency keys of the requests that ran on it
and the last one's response, so a retried request is answered from that
record instead of running twice (see :mod:`session_proxy_server.outcomes`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy.engine import Engine

from session_proxy.wire import protocol

from . import after_response, backends, database

#: How long opening a lease at a cap waits for another to end before refusing.
CAP_WAIT_SECONDS = 0.25

log = logging.getLogger("session_proxy.server")


_TAG = re.compile(r"[0-9a-f]{8}")


def instance_tag(instance: str) -> str:
    """The short tag of an instance name that lease ids carry."""
    return hashlib.sha256(instance.encode("utf-8")).hexdigest()[:8]


class LeaseError(Exception):
    """A transaction id cannot be used; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class Lease:
    """One server-held transaction on one pooled connection."""

    def __init__(
        self,
        lease_id: str,
        connection: Any,
        options: dict[str, Any],
        owner: tuple[str, str] = ("", ""),
    ) -> None:
        self.id = lease_id
        self.connection = connection
        self.options = options
        #: (subject, role) of the caller that opened the transaction.
        self.owner = owner
        self.cursors: dict[str, Any] = {}
        #: PostgreSQL cursors of this lease (:class:`session_proxy_server.cursors.Portals`).
        self.portals: Any = None
        self.lock = threading.Lock()
        self.created = time.monotonic()
        self.last_used = self.created
        self.ended = False
        #: Idempotency keys of the requests that ran on this lease, with
        #: the digest of each request (:func:`session_proxy_server.outcomes.request_digest`).
        self.keys: dict[str, str] = {}
        #: The key and response of the last of them, for a retry.
        self.last_key: str | None = None
        self.last_outcome: Any = None
        #: The key of the request that opened the lease.
        self.open_key: str | None = None
        #: Whether a statement that may write has run.
        self.wrote = False
        #: Whether the session holds nothing of this lease any more: the
        #: commit reset it in its own round trip (PostgreSQL).  Only then does
        #: the connection go back to the pool without a reset of its own.
        self.session_clean = False
        #: A statement may have taken a session lock (:func:`session_proxy_server.sql.
        #: session_state.may_take_session_lock`): other sessions see it at once,
        #: so the reset runs before the answer, not after.
        self.reset_before_answer = False
        #: The held session whose connection this lease runs on (session
        #: pooling, :class:`session_proxy_server.sessions.HeldSession`), or None.
        self.session: Any = None
        #: Why the connection was dropped from the pool, once it was.
        self.lost: str | None = None

    def invalidate(self, why: str) -> None:
        """Drop the connection: the pool closes it rather than lending it again."""
        self.lost = why
        self.connection.invalidate()

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
        max_per_subject: int | None = None,
        max_transaction_seconds: float | None = None,
        statement_timeout_seconds: float = 300.0,
        instance: str = "",
    ) -> None:
        self.engine = engine
        #: What this engine's database needs between leases (the session reset).
        self.backend = backends.for_engine(engine)
        #: Name of this server instance, and the tags that lease ids carry.
        self.instance = instance
        self.instance_tag = instance_tag(instance)
        self.boot_tag = secrets.token_hex(4)
        self.lease_seconds = lease_seconds
        self.max_open = max_open
        self.max_per_subject = max_per_subject or max_open
        self.max_transaction_seconds = max_transaction_seconds
        self.statement_timeout_seconds = statement_timeout_seconds
        self.expired_memory_seconds = expired_memory_seconds
        self.lock_wait_seconds = lock_wait_seconds
        self.expired_count = 0
        #: Session resets run on their own, and done by the commit, since start.
        self.resets_run = 0
        self.resets_with_commit = 0
        self._leases: dict[str, Lease] = {}
        #: Ids of the open leases that run on a held session's connection.
        self._session_leases: set[str] = set()
        #: Expired ids: (forget-after time, why it expired), oldest first.
        self._expired: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._owners: dict[str, tuple[str, str]] = {}
        #: (subject, role, idempotency key) of an opening request -> lease id.
        self._opened_by: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        #: Notified whenever a lease is forgotten: a slot under the caps freed.
        self._freed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)

    def idle_count(self) -> int:
        """Open leases no request is using now: each may send its next request any time.

        A lease still being opened, or whose lock a request holds, is busy.
        """
        with self._lock:
            return sum(
                1 for lease in self._leases.values()
                if lease is not None and not lease.ended and not lease.lock.locked()
            )

    # -- lifecycle of one lease ------------------------------------------------

    def open(
        self,
        options: dict[str, Any],
        owner: tuple[str, str] = ("", ""),
        key: str | None = None,
        session: Any = None,
    ) -> Lease:
        """Check out a connection, apply ``options`` and register a new lease.

        ``owner`` is the caller's (subject, role) and ``key`` the opening
        request's idempotency key.  With ``session`` (a
        :class:`~session_proxy_server.sessions.HeldSession` of ``owner``) the
        lease runs on that session's connection instead of one from the pool.
        The caller holds the returned lease's lock.
        """
        if session is not None:
            return self._open_in_session(options, owner, key, session)
        with self._lock:
            self._wait_for_a_slot(owner)
            lease_id = f"{self.instance_tag}-{self.boot_tag}-{secrets.token_urlsafe(24)}"
            # Reserve the slot before the (possibly slow) checkout.
            self._leases[lease_id] = None  # type: ignore[assignment]
            self._owners[lease_id] = owner
        try:
            connection = self.engine.raw_connection()
        except BaseException:
            with self._lock:
                del self._leases[lease_id]
                del self._owners[lease_id]
                self._freed.notify_all()
            raise
        lease = Lease(lease_id, connection, options, owner)
        lease.open_key = key
        self._start(lease)
        with self._lock:
            self._leases[lease_id] = lease
            if key is not None:
                self._opened_by[(owner[0], owner[1], key)] = lease_id
        return lease

    def _start(self, lease: Lease) -> None:
        """Take ``lease``'s lock and apply its options; discard it if they fail."""
        lease.lock.acquire()
        try:
            self._apply_options(lease)
        except BaseException:
            lease.lock.release()
            self._discard(lease)
            raise

    def _open_in_session(
        self, options: dict[str, Any], owner: tuple[str, str], key: str | None, session: Any
    ) -> Lease:
        """A lease on ``session``'s own connection (see :meth:`open`)."""
        lease_id = f"{self.instance_tag}-{self.boot_tag}-{secrets.token_urlsafe(24)}"
        lease = Lease(lease_id, session.connection, options, owner)
        lease.session = session
        lease.open_key = key
        session.begin(lease)  # raises if it is closed or has a transaction open
        self._start(lease)
        with self._lock:
            self._leases[lease_id] = lease
            self._owners[lease_id] = owner
            self._session_leases.add(lease_id)
            if key is not None:
                self._opened_by[(owner[0], owner[1], key)] = lease_id
        return lease

    def _wait_for_a_slot(self, owner: tuple[str, str]) -> None:
        """Return once a lease may open under the caps; raise if none frees in time.

        At a cap, waits up to :data:`CAP_WAIT_SECONDS` for a lease to end
        (a client's COMMIT of a transaction that only read is on its way
        without the client waiting for it) before refusing.  The caller
        holds ``self._lock``.
        """
        deadline = time.monotonic() + CAP_WAIT_SECONDS
        while True:
            pooled = [
                lease_id for lease_id in self._owners if lease_id not in self._session_leases
            ]
            if len(pooled) >= self.max_open:
                refusal = LeaseError(
                    protocol.TOO_MANY_TRANSACTIONS,
                    f"server has {self.max_open} open transactions, its limit; "
                    "retry shortly",
                    retry_after=1,
                )
            else:
                held = sum(1 for lease_id in pooled if self._owners[lease_id][0] == owner[0])
                if held < self.max_per_subject:
                    return
                refusal = LeaseError(
                    protocol.SUBJECT_LIMIT,
                    f"subject {owner[0]!r} already has {held} open transactions, "
                    f"the limit per subject; commit or roll one back first",
                    retry_after=1,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise refusal
            self._freed.wait(remaining)

    def opened_by(self, owner: tuple[str, str], key: str) -> str | None:
        """The id of the open lease that ``owner``'s request ``key`` opened, if any."""
        with self._lock:
            return self._opened_by.get((owner[0], owner[1], key))

    def acquire(self, lease_id: str, owner: tuple[str, str] = ("", "")) -> Lease:
        """Find ``owner``'s lease by id and take its lock; raises :class:`LeaseError`."""
        self._check_instance(lease_id)
        with self._lock:
            if self._owners.get(lease_id, owner) != owner:
                log.warning(
                    "subject %r (role %r) presented transaction %s... of another caller",
                    owner[0], owner[1], lease_id[:8],
                )
                raise self._unknown_error(lease_id)
            lease = self._leases.get(lease_id)
            expired = self._expired.get(lease_id)
        if lease is None:
            if expired:
                raise self._expired_error(lease_id, expired[1])
            raise self._unknown_error(lease_id)
        if not lease.lock.acquire(timeout=self.lock_wait_seconds):
            raise LeaseError(
                protocol.TRANSACTION_BUSY,
                f"transaction {lease_id[:8]}... is in use by another request",
            )
        if not lease.ended and self._too_old(lease, time.monotonic()):
            self._expire(lease, "open too long")
        if lease.ended:
            lease.lock.release()
            with self._lock:
                expired = self._expired.get(lease_id)
            if expired:
                raise self._expired_error(lease_id, expired[1])
            raise self._unknown_error(lease_id)
        return lease

    def release(self, lease: Lease) -> None:
        """Let go of a lease's lock after a request, restarting its idle clock."""
        lease.touch()
        lease.lock.release()

    def end(self, lease: Lease) -> None:
        """Forget a lease whose transaction was committed or rolled back.

        The caller holds the lease's lock and still releases it afterwards.
        The connection's session reset and its return to the pool wait
        until the response is written, when a request is being served.
        """
        self._discard(lease, defer=True)

    def _discard(self, lease: Lease, defer: bool = False) -> None:
        lease.ended = True
        for cursor in lease.cursors.values():
            try:
                cursor.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        lease.cursors.clear()
        with self._lock:
            self._leases.pop(lease.id, None)
            self._owners.pop(lease.id, None)
            self._session_leases.discard(lease.id)
            self._freed.notify_all()
            if lease.open_key is not None:
                self._opened_by.pop((lease.owner[0], lease.owner[1], lease.open_key), None)
        if lease.session is not None:
            self._return_to_session(lease)
            return
        # Until the reset returns it, the connection is out of the pool: a new
        # lease waits for it (or takes another) and never sees a dirty session.
        defer = defer and not lease.reset_before_answer
        if not (defer and after_response.defer(lambda: self._reset(lease))):
            self._reset(lease)

    def _return_to_session(self, lease: Lease) -> None:
        """Hand a session lease's connection back to its session, options undone.

        No session reset: what the transaction left (temporary tables,
        settings) is the session's, as on a direct connection.
        """
        if lease.lost is None:
            try:
                self._reset_options(lease)
            except Exception as exc:  # noqa: BLE001 - a lost connection fails in many ways
                lease.invalidate(f"its connection options could not be reset ({exc})")
        lease.session.end(lease)

    def _reset(self, lease: Lease) -> None:
        """Clear what the lease left on its connection; give it back to the pool."""
        try:
            self._reset_options(lease)
            if lease.session_clean:
                self.resets_with_commit += 1
            else:
                self.backend.reset_session(
                    lease.dbapi_connection,
                    self.statement_timeout_seconds,
                    lease.connection.info,
                )
                self.resets_run += 1
            # Nothing is open: the pool need not roll back on return.
            lease.connection.info[database.RESET_DONE] = True
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "could not reset the connection's session (%s: %s); discarding connection",
                type(exc).__name__, exc,
            )
            lease.invalidate("its session could not be reset")
        # Returning the connection to the pool rolls back anything left open.
        lease.connection.close()

    def _check_instance(self, lease_id: str) -> None:
        """Refuse an id of another instance, or of an earlier run of this one."""
        self.check_instance(lease_id, "transaction")

    def check_instance(self, some_id: str, what: str) -> None:
        """Refuse a ``what`` (transaction, session) id this process did not make.

        421 ``wrong_instance`` for another instance's id; for an id of an
        earlier run of this instance, ``unknown_transaction`` or (sessions)
        ``session_closed``, saying the server restarted.
        """
        parts = some_id.split("-", 2)
        if len(parts) != 3 or not all(_TAG.fullmatch(part) for part in parts[:2]):
            return  # not an id this software made: "unknown" will say so
        if parts[0] == self.instance_tag and parts[1] == self.boot_tag:
            return
        if parts[0] != self.instance_tag:
            raise LeaseError(
                protocol.WRONG_INSTANCE,
                f"{what} {some_id[:20]}... is held by another server instance "
                f"(tag {parts[0]}), not by {self.instance!r} (tag {self.instance_tag}); "
                "send its requests to the base_url of the response that opened it",
            )
        if what == "session":
            raise LeaseError(
                protocol.SESSION_CLOSED,
                f"session {some_id[:20]}... was opened by an earlier run of this "
                "server, which has restarted since: its database connection, "
                "temporary tables and settings are gone; open a new connection",
            )
        raise LeaseError(
            protocol.UNKNOWN_TRANSACTION,
            f"transaction {some_id[:20]}... was opened by an earlier run of this "
            "server, which has restarted since; the database rolled it back, "
            "nothing of it was committed",
        )

    @staticmethod
    def _unknown_error(lease_id: str) -> LeaseError:
        return LeaseError(
            protocol.UNKNOWN_TRANSACTION,
            f"transaction {lease_id[:8]}... is not open on this server for this "
            "caller: it was committed or rolled back, the server restarted, or "
            "another caller opened it",
        )

    def _expired_error(self, lease_id: str, why: str) -> LeaseError:
        if why == "open too long":
            limit = f"was open longer than the limit of {self.max_transaction_seconds:g} s"
        elif why == "statement timeout":
            limit = (
                f"ran a statement past the statement timeout of "
                f"{self.statement_timeout_seconds:g} s"
            )
        elif why == "session closed":
            limit = "was open when its session closed"
        else:
            limit = f"expired after {self.lease_seconds:g} s idle"
        return LeaseError(
            protocol.TRANSACTION_EXPIRED,
            f"transaction {lease_id[:8]}... {limit}; the server rolled it back "
            "and released its locks",
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

    def _idle(self, lease: Lease, now: float) -> bool:
        return now - lease.last_used > self.lease_seconds

    def _too_old(self, lease: Lease, now: float) -> bool:
        limit = self.max_transaction_seconds
        return limit is not None and now - lease.created > limit

    def expire(self, lease: Lease, why: str, invalidate: bool = False) -> None:
        """Roll back and forget a lease whose lock the caller holds.

        With ``invalidate`` the connection is closed rather than pooled
        again (the watchdog may have sent it a cancel that arrives late).
        """
        self._expire(lease, why, invalidate)

    def _expire(self, lease: Lease, why: str, invalidate: bool = False) -> None:
        """Roll back and forget a lease whose lock the caller holds."""
        with self._lock:
            self._expired[lease.id] = (time.monotonic() + self.expired_memory_seconds, why)
        if invalidate:
            lease.invalidate(f"its transaction was stopped ({why})")
        else:
            try:
                lease.dbapi_connection.rollback()
            except Exception as exc:  # noqa: BLE001
                lease.invalidate(f"its rollback failed ({type(exc).__name__}: {exc})")
        self._discard(lease)
        self.expired_count += 1
        log.info("lease %s... expired (%s) and was rolled back", lease.id[:8], why)

    def reap(self) -> int:
        """Roll back every lease idle or open past its limit; return how many.

        A lease in use by a request is left alone; a request that finds its
        lease open past the limit expires it itself (see :meth:`acquire`).
        """
        now = time.monotonic()
        with self._lock:
            candidates = [
                lease
                for lease in self._leases.values()
                if lease is not None and (self._idle(lease, now) or self._too_old(lease, now))
            ]
            while self._expired and next(iter(self._expired.values()))[0] < now:
                self._expired.popitem(last=False)
        reaped = 0
        for lease in candidates:
            if not lease.lock.acquire(blocking=False):
                continue  # a request is using it right now
            try:
                now = time.monotonic()
                if lease.ended:
                    continue
                if self._too_old(lease, now):
                    self._expire(lease, "open too long")
                elif self._idle(lease, now):
                    self._expire(lease, "idle")
                else:
                    continue
                reaped += 1
            finally:
                lease.lock.release()
        return reaped

    def start_reaper(self) -> None:
        """Run :meth:`reap` in a daemon thread until :meth:`shutdown`."""
        if self._reaper is not None:
            return
        shortest = min(self.lease_seconds, self.max_transaction_seconds or self.lease_seconds)
        interval = min(1.0, max(shortest / 4, 0.05))

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
