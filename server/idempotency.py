"""Makes every request with an idempotency key run at most once.

One module for both hosts that run requests: the statement executor
(:mod:`session_proxy_server.executor`) and the logical-operation host
(:mod:`session_proxy_server.operations`).  It owns

- **replay lookup**, in the order that costs least: the answer kept on the
  open lease (a retry of the last request of a transaction), this
  instance's memory, and on a retry the outcome table
  (:class:`session_proxy_server.outcomes.OutcomeStore`);
- **conflict checks**: a record answers only the request that made it, the
  same subject, role and request digest (:func:`session_proxy_server.outcomes.request_digest`);
  a key naming another request is refused (409) and nothing runs;
- **recording**: in the committing transaction itself (driver connection or
  ORM session), on the lease while its transaction is open, and in memory
  once it ended.

An earlier answer is delivered by raising :class:`Replay`; the host catches
it where it builds its response.  The hosts decide *when* to record (the
executor only for a commit that wrote, the operation host only for a call
that wrote); this module decides *how* and *where*.

When not to use this: the outcome table itself (its columns, purging, the
scope of records) is :mod:`session_proxy_server.outcomes`; a request without a key never
comes here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps

from .outcomes import Outcome, OutcomeConflict, OutcomeStore, replayable


@dataclasses.dataclass(frozen=True)
class Request:
    """Who sent a keyed request, and which request it is."""

    subject: str
    role: str
    key: str
    #: SHA-256 of the request's method, path and body.
    digest: str

    def outcome(self, status: int, body: bytes) -> Outcome:
        """The outcome of this request answered ``status`` and ``body``."""
        return Outcome(status, body, self.role, self.digest)


def request_of(owner: tuple[str, str], key: str | None, digest: str) -> Request | None:
    """The keyed request of ``owner`` (subject, role); None without a key."""
    if key is None:
        return None
    return Request(owner[0], owner[1], key, digest)


class Replay(Exception):
    """An earlier attempt of this request finished; ``outcome`` is its answer."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("replayed")
        self.outcome = outcome


class StaleRequest(Exception):
    """The request ran on its open transaction, but its answer is no longer kept."""


#: Makes the host's own 409 error from a conflict's message.
ConflictError = Callable[[str], Exception]


class Idempotency:
    """Replay, conflict checks and recording over one :class:`OutcomeStore`.

    :param outcomes: where outcomes are recorded; None keeps only what the
        leases hold (no outcome table).
    :param conflict: makes the host's 409 error from a message.
    """

    def __init__(self, outcomes: OutcomeStore | None, conflict: ConflictError) -> None:
        self.outcomes = outcomes
        self._conflict = conflict

    @property
    def records(self) -> bool:
        """Whether outcomes are recorded at all (an outcome table exists)."""
        return self.outcomes is not None

    # -- replay lookup ----------------------------------------------------------------

    def check(self, request: Request, database: bool = True) -> None:
        """Raise :class:`Replay` if an outcome of ``request`` is recorded.

        Looks in this instance's memory, and in the outcome table when
        ``database``.  A record of another role or request raises the
        host's conflict error.
        """
        if self.outcomes is None:
            return
        if database:
            found = self.outcomes.find(request.subject, request.key)
        else:
            found = self.outcomes.recall(request.subject, request.key)
        self._replay(found, request)

    def _replay(self, found: Outcome | None, request: Request) -> None:
        try:
            outcome = replayable(found, request.key, request.role, request.digest)
        except OutcomeConflict as exc:
            raise self._conflict(str(exc)) from None
        if outcome is not None:
            raise Replay(outcome)

    def check_lease(self, lease: Any, request: Request) -> None:
        """Raise if ``request`` already ran on the open ``lease``.

        :class:`Replay` when its answer is the one the lease keeps (it was
        the lease's last request), the conflict error when the key ran
        there for another request, :class:`StaleRequest` when later
        requests ran since.
        """
        if request.key not in lease.keys:
            return
        if lease.keys[request.key] != request.digest:
            raise self._conflict(str(OutcomeConflict(request.key)))
        if request.key == lease.last_key and lease.last_outcome is not None:
            raise Replay(lease.last_outcome)
        raise StaleRequest(
            "this request already ran on its transaction, and later requests "
            "have run since; its answer is no longer kept"
        )

    def recorded(self, request: Request) -> bool:
        """Whether any outcome is recorded for the request's subject and key."""
        if self.outcomes is None:
            return False
        return self.outcomes.find(request.subject, request.key) is not None

    def replayed(self, outcome: Outcome) -> Outcome:
        """Count one response answered from a record; return it."""
        if self.outcomes is not None:
            self.outcomes.replayed()
        return outcome

    # -- recording ----------------------------------------------------------------------

    def keep(self, lease: Any, request: Request, status: int, body: bytes) -> None:
        """Keep the answer of a request that ran on ``lease``.

        While the transaction is open the lease holds it (a retry is
        answered there); once it ended, this instance's memory does.
        """
        outcome = request.outcome(status, body)
        if lease.ended:
            self.remember(request, outcome)
        else:
            lease.keys[request.key] = request.digest
            lease.last_key = request.key
            lease.last_outcome = outcome

    def remember(self, request: Request, outcome: Outcome) -> None:
        """Keep ``outcome`` in this instance's memory for the window."""
        if self.outcomes is not None:
            self.outcomes.remember(request.subject, request.key, outcome)

    def record_on(self, dbapi_connection: Any, request: Request, outcome: Outcome) -> None:
        """Insert ``outcome`` in the open transaction of a driver connection.

        Raises the driver's ``IntegrityError`` when the key is recorded already.
        """
        assert self.outcomes is not None
        self.outcomes.record_on(dbapi_connection, request.subject, request.key, outcome)

    def record_and_commit(
        self,
        dbapi_connection: Any,
        request: Request,
        outcome: Outcome,
        run: Any,
        condition: str | None,
    ) -> None:
        """Insert ``outcome`` (only when ``condition`` holds) and commit, one round trip."""
        assert self.outcomes is not None
        self.outcomes.record_and_commit(
            dbapi_connection, request.subject, request.key, outcome, run, condition
        )

    def record_in_session(self, session: Any, request: Request, outcome: Outcome) -> None:
        """Insert ``outcome`` through an ORM session, inside its transaction."""
        assert self.outcomes is not None
        self.outcomes.record_in_session(session, request.subject, request.key, outcome)

    def failed(self, request: Request, code: str, message: str, **extra: Any) -> None:
        """Remember that ``request`` failed with ``code`` after it ran."""
        body = protocol.error_body(code, message, **extra)
        self.remember(request, request.outcome(protocol.ERROR_STATUS[code], dumps(body)))

    def ensure_table(self) -> None:
        """Create the outcome table again if it has gone."""
        if self.outcomes is not None:
            self.outcomes.ensure_table()
