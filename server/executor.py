"""Runs the steps of one pipeline request on a leased connection.

The executor is the only code that touches a driver connection.  It executes
statements exactly as sent (SQL compiled by the client's copy of this
server's driver dialect), keeps a server-side cursor for results longer than
one page, and turns driver exceptions into protocol error bodies that keep
the PEP 249 class, message, args and backend error code.

It also makes every request run at most once (see :mod:`session_proxy_server.outcomes`):
a request whose idempotency key already ran is answered from its record, a
commit that wrote records its response in the same transaction, and a
failed commit ends the transaction, so a retry can never commit part of it.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps, encode_rows, to_wire
from session_proxy.wire.messages import Expectation, PipelineReply

from . import backends
from .backends import PARAMETER_ERRORS as _PARAMETER_ERRORS
from .cursors import CursorDropped, ServerCursor, cursorable
from .idempotency import Idempotency, Replay, StaleRequest, request_of
from .leases import Lease, LeaseError, LeaseRegistry
from .outcomes import OutcomeStore
from .sessions import HeldSession
from .sql.scripts import split_script
from .sql.session_state import may_take_session_lock
from .sql.writes import may_write
from .watchdog import STATEMENT, TRANSACTION, Watch, Watchdog

log = logging.getLogger("session_proxy.server")


def watchdog_grace(timeout: float) -> float:
    """How long past the statement timeout the watchdog waits before it cancels.

    The database's own timeout normally stops the statement first (with its
    own message); the watchdog is for statements that switched it off.
    """
    return max(0.5, timeout / 10)


@dataclasses.dataclass
class Reply:
    """What one pipeline request answers: status, encoded body and measurements."""

    status: int
    body: bytes
    #: How long the transaction was open, when this request ended it.
    transaction_seconds: float | None = None
    #: Answered from the record of an earlier attempt; nothing ran.
    replayed: bool = False


class BadParameters(Exception):
    """The driver refused a statement's parameters before sending it."""


class StepFailed(Exception):
    """A step failed; ``body`` is the error body, ``status`` its HTTP status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


def _name_statement(error: dict[str, Any], prefix: str) -> None:
    """Put ``prefix`` in front of an error's message and first argument."""
    error["message"] = prefix + error["message"]
    args = error.get("args")
    if isinstance(args, list) and args and isinstance(args[0], str):
        args[0] = prefix + args[0]


class _RowcountCheck:
    """Sums the rowcounts of consecutive steps in one ``check_group``.

    When a group ends (the next step is in another group, or none is left)
    the sums must agree; otherwise the request fails before any later step
    runs, and the transaction stays open for the client to roll back.
    """

    def __init__(self) -> None:
        self.group: int | None = None
        self.expected = 0
        self.actual = 0
        self.last_index = -1

    def before(self, step: dict, lease: Lease) -> None:
        expectation = Expectation.of(step)
        group = expectation.check_group if expectation is not None else None
        if self.group is not None and group != self.group:
            self.finish(lease)

    def after(self, index: int, step: dict, result: dict) -> None:
        expectation = Expectation.of(step)
        if expectation is None:
            return
        self.group = expectation.check_group
        self.expected += expectation.expect_rowcount
        self.actual += result.get("rowcount", 0)
        self.last_index = index

    def finish(self, lease: Lease) -> None:
        group, expected, actual = self.group, self.expected, self.actual
        self.group, self.expected, self.actual = None, 0, 0
        if group is None or expected == actual:
            return
        raise StepFailed(
            protocol.ERROR_STATUS[protocol.ROWCOUNT_MISMATCH],
            protocol.error_body(
                protocol.ROWCOUNT_MISMATCH,
                f"statements of check group {group} matched {actual} row(s), "
                f"expected {expected}",
                step=self.last_index,
                group=group,
                expected=expected,
                actual=actual,
                txn=lease.id,
            ),
        )


def _conflict(message: str) -> LeaseError:
    """The 409 for a key that names another request's outcome."""
    return LeaseError(protocol.IDEMPOTENCY_CONFLICT, message)


def _page(rows: list) -> dict[str, Any]:
    """A page of result rows as the protocol sends it, with its tagged columns."""
    encoded, tagged = encode_rows(rows)
    return {"rows": encoded, "tagged": tagged} if tagged else {"rows": encoded}


def _column(column: Any) -> list[Any]:
    fields = list(tuple(column)[:7])
    return [f if f is None or type(f) in (int, str, bool) else None for f in fields]


class Executor:
    """Runs validated steps against leases from a :class:`LeaseRegistry`."""

    def __init__(
        self,
        registry: LeaseRegistry,
        page_size: int,
        dbapi_error: type,
        driver: str = "",
        statement_timeout_seconds: float = 300.0,
        outcomes: OutcomeStore | None = None,
        integrity_error: type | None = None,
    ) -> None:
        self.registry = registry
        self.outcomes = outcomes
        #: Replay, conflict checks and recording of keyed requests.
        self.idempotency = Idempotency(outcomes, _conflict)
        #: The driver's IntegrityError: what a second insert of a key raises.
        self.integrity_error = integrity_error or dbapi_error
        #: What differs by database: cursors, deadlines, cancel, error codes.
        self.backend = backends.for_engine(registry.engine)
        self.driver = driver or self.backend.driver
        self.page_size = page_size
        self.dbapi_error = dbapi_error
        self.statement_timeout_seconds = statement_timeout_seconds
        self.statements = 0
        #: Cancels statements past the statement timeout or transaction limit.
        self.watchdog = Watchdog()
        #: Opens a driver connection of its own (MySQL's ``KILL QUERY``).
        self.kill_connect = self._connect_for_kill
        #: Read long results through server-side cursors (:mod:`.cursors`).
        self.streaming = self.backend.streams_results
        #: Address of this instance that opening responses name, if any.
        self.base_url: str | None = None

    def run(
        self,
        txn: str | None,
        steps: list[dict],
        owner: tuple[str, str] = ("", ""),
        key: str | None = None,
        retry: bool = False,
        digest: str = "",
        session: HeldSession | None = None,
    ) -> Reply:
        """Run ``steps`` for ``owner`` (subject, role) and answer them.

        ``steps`` have been validated, checked against the caller's policy
        and their parameters decoded.  ``key`` is the request's idempotency
        key, ``retry`` whether the client says this is a retry and
        ``digest`` names the request (:func:`session_proxy_server.outcomes.request_digest`):
        a record of ``key`` answers it only if made by the same role for
        the same digest.  ``session`` is ``owner``'s held session the request
        names (session pooling): a new transaction runs on its connection.
        Raises :class:`~session_proxy_server.leases.LeaseError` when the
        transaction cannot be used or the key names another request;
        nothing ran then.
        """
        try:
            return self._run(txn, steps, owner, key, retry, digest, session)
        except Replay as replay:
            outcome = self.idempotency.replayed(replay.outcome)
            return Reply(outcome.status, outcome.body, replayed=True)

    def _run(
        self,
        txn: str | None,
        steps: list[dict],
        owner: tuple[str, str],
        key: str | None,
        retry: bool,
        digest: str,
        session: HeldSession | None = None,
    ) -> Reply:
        commits = steps[-1]["op"] == protocol.COMMIT
        request = request_of(owner, key, digest)
        if txn is None and key is not None:
            # A retry of the request that opened a lease is answered there.
            txn = self.registry.opened_by(owner, key)
        if txn is None:
            if not any(
                step["op"] in (protocol.EXECUTE, protocol.EXECUTE_MANY, protocol.EXECUTE_SCRIPT)
                for step in steps
            ):
                # Nothing to run: committing or closing what was never begun.
                return Reply(200, dumps({"txn": None, "results": [{} for _ in steps]}))
            if request is not None:
                # This instance's memory always (cheap), the table on a retry.
                self.idempotency.check(request, database=retry)
            options = steps[0].get("options", {}) if steps[0]["op"] == protocol.BEGIN else {}
            try:
                lease = self.registry.open(options, owner, key, session)
            except self.dbapi_error as exc:
                return self._failure(StepFailed(
                    protocol.ERROR_STATUS[protocol.DATABASE_ERROR],
                    self._database_error(exc, -1, None),
                ))
            opening = True
        else:
            lease = self._acquire(txn, owner, key, commits, digest)
            opening = False
            if session is not None and lease.session is not session:
                self.registry.release(lease)
                raise LeaseError(
                    protocol.UNKNOWN_TRANSACTION,
                    f"transaction {txn[:8]}... is not open in session {session.id[:8]}...",
                )
        try:
            reply = self._run_steps(lease, steps, owner, key, opening, digest)
            if request is not None:
                self.idempotency.keep(lease, request, reply.status, reply.body)
            return reply
        finally:
            self.registry.release(lease)

    def _acquire(
        self, txn: str, owner: tuple[str, str], key: str | None, commits: bool, digest: str
    ) -> Lease:
        """The open lease ``txn``; a repeated ``key`` raises :class:`Replay`."""
        request = request_of(owner, key, digest)
        try:
            lease = self.registry.acquire(txn, owner)
        except LeaseError as exc:
            if request is None or exc.code not in (
                protocol.UNKNOWN_TRANSACTION, protocol.TRANSACTION_EXPIRED
            ):
                raise
            self.idempotency.check(request)
            if commits:
                exc.args = (
                    f"{exc}; no commit is recorded for this request, so the "
                    "transaction did not commit",
                )
            raise
        if request is None:
            return lease
        try:
            self.idempotency.check_lease(lease, request)
        except StaleRequest as exc:
            self.registry.release(lease)
            raise LeaseError(protocol.STALE_REQUEST, str(exc)) from None
        except BaseException:
            self.registry.release(lease)
            raise
        return lease

    def _run_steps(
        self,
        lease: Lease,
        steps: list[dict],
        owner: tuple[str, str],
        key: str | None,
        opening: bool,
        digest: str = "",
    ) -> Reply:
        results: list[dict] = []
        check = _RowcountCheck()
        try:
            for index, step in enumerate(steps):
                check.before(step, lease)
                if step["op"] == protocol.COMMIT:
                    check.finish(lease)
                    self._commit(lease, index, results, owner, key, opening, digest)
                    results.append({})
                    continue
                result = self._run_step(lease, index, step)
                check.after(index, step, result)
                results.append(result)
            check.finish(lease)
        except StepFailed as failed:
            return self._failure(failed)
        opened = opening and not lease.ended
        # The request that opened the lease says where it lives.
        body = PipelineReply(
            None if lease.ended else lease.id,
            results,
            instance=self.registry.instance if opened else None,
            base_url=(self.base_url or None) if opened else None,
            read_only=True if not lease.ended and self._reads_only(lease) else None,
        ).to_json()
        return Reply(
            200,
            dumps(body),
            time.monotonic() - lease.created if lease.ended else None,
        )

    def _reads_only(self, lease: Lease) -> bool:
        """Whether the open transaction can be committed without anyone waiting.

        Every statement so far provably only read and locked no rows
        (:func:`session_proxy_server.sql.writes.may_write`), the transaction
        has not failed, and at its isolation level a reader's COMMIT cannot
        fail in a way that matters to its client
        (:meth:`session_proxy_server.backends.base.Backend.reader_commit_is_safe`).
        """
        if lease.wrote:
            return False
        isolation = lease.options.get("isolation_level") or getattr(
            self.registry.engine.dialect, "default_isolation_level", None
        )
        return self.backend.reader_commit_is_safe(isolation) and not (
            self.backend.transaction_failed(lease.dbapi_connection)
        )

    def _failure(self, failed: StepFailed) -> Reply:
        return Reply(failed.status, dumps(failed.body))

    def _commit(
        self,
        lease: Lease,
        index: int,
        results: list[dict],
        owner: tuple[str, str],
        key: str | None,
        opening: bool,
        digest: str = "",
    ) -> None:
        """Commit, recording the answer first when the transaction wrote.

        A commit that fails ends the transaction: the database rolled it
        back (or this rolls it back), so no retry can commit part of it.
        """
        conn = lease.dbapi_connection
        self._close_cursors(lease)
        unrecorded = False
        keyed = key is not None and self.idempotency.records
        usual = (
            lease.options.get("isolation_level") != "AUTOCOMMIT"
            and not self.backend.transaction_failed(conn)
        )
        if usual and self.backend.wrote_condition is not None:
            # Record (when it wrote), commit and reset the session: one round trip.
            if keyed:
                assert key is not None
                unrecorded = not self._record(
                    lease, index, results, owner, key, opening, digest, with_commit=True
                )
            else:
                self._commit_in_one_trip(lease, index)
        elif keyed and usual and self._wrote(lease):
            assert key is not None
            unrecorded = not self._record(lease, index, results, owner, key, opening, digest)
        try:
            conn.commit()  # nothing to send when it committed already
        except self.dbapi_error as exc:
            self._end_failed(lease)
            raise self._database_failure(exc, index) from exc
        self.registry.end(lease)
        if unrecorded:
            # After the commit: SQLite would wait on this very transaction.
            self.idempotency.ensure_table()

    def _wrote(self, lease: Lease) -> bool:
        """Whether the transaction may have written, so its commit is recorded.

        By its statements' text (:func:`session_proxy_server.sql.writes.may_write`); where the
        text looked read-only, the database is asked too
        (:meth:`session_proxy_server.backends.base.Backend.transaction_wrote`), since a
        view or a row-level security policy can call a writing function that
        no text shows.
        """
        if lease.wrote:
            return True
        try:
            wrote = self.backend.transaction_wrote(lease.dbapi_connection)
        except self.dbapi_error:
            return True  # unsure: record, and let a failed insert fail the commit
        if wrote is not None:
            lease.wrote = wrote
        return lease.wrote

    def _record(
        self,
        lease: Lease,
        index: int,
        results: list[dict],
        owner: tuple[str, str],
        key: str,
        opening: bool,
        digest: str = "",
        with_commit: bool = False,
    ) -> bool:
        """Insert the commit's answer in its transaction; False if it could not be.

        ``with_commit``: the backend inserts, commits and resets the session
        in one round trip, the insert conditional on the transaction having
        written unless its text said so already.  Raises :class:`Replay` or :class:`StepFailed`
        (the transaction then rolled back) when the key is recorded already
        or the failure aborted the transaction (or, ``with_commit``, the
        commit failed).
        """
        request = request_of(owner, key, digest)
        assert request is not None
        answer = {"txn": None, "results": [*results, {}]}
        conn = lease.dbapi_connection
        outcome = request.outcome(200, dumps(answer))
        try:
            if with_commit:
                condition = None if lease.wrote else self.backend.wrote_condition
                self.idempotency.record_and_commit(
                    conn, request, outcome, self._one_trip(lease), condition
                )
            else:
                self.idempotency.record_on(conn, request, outcome)
        except self.integrity_error as exc:
            self._end_failed(lease)
            if with_commit and not self._names_outcome_table(exc):
                # The commit failed (a deferred constraint), not the record.
                raise self._database_failure(exc, index) from exc
            if opening:
                # The key is recorded: an earlier attempt of this very
                # request (begin to commit) committed while this one ran.
                self.idempotency.check(request)
            elif self.idempotency.recorded(request):
                raise StepFailed(
                    protocol.ERROR_STATUS[protocol.STALE_REQUEST],
                    protocol.error_body(
                        protocol.STALE_REQUEST,
                        f"idempotency key {key} already names another committed "
                        "request; keys must be unique per request.  This "
                        "transaction was rolled back",
                        step=index,
                    ),
                ) from exc
            raise self._database_failure(exc, index) from exc
        except self.dbapi_error as exc:
            # The table is gone (dropped by hand), say: make it again for
            # next time.  Where a failed statement aborts the transaction
            # (PostgreSQL), committing now would silently roll back, so
            # the commit fails instead; elsewhere it goes ahead unrecorded.
            # With the commit in the same query, the commit itself may be
            # what failed (a serialization failure): the same answer.
            if not with_commit or self._names_outcome_table(exc):
                log.warning("outcome of request %s not recorded: %s", key, exc)
            if self.backend.aborts_on_error:
                self._end_failed(lease)
                self.idempotency.ensure_table()
                raise self._database_failure(exc, index) from exc
            return False
        return True

    def _one_trip(self, lease: Lease) -> Any:
        """The backend's one-trip commit for ``lease``, which resets its session too
        (unless the lease runs in a held session)."""

        # A held session keeps its state: commit, and reset nothing.
        reset = lease.session is None

        def run(connection: Any, insert_sql: str | None, params: Any) -> None:
            self.backend.record_and_commit(connection, insert_sql, params, reset=reset)
            lease.session_clean = reset

        return run

    def _commit_in_one_trip(self, lease: Lease, index: int) -> None:
        """Commit and reset the session in one round trip; no record to make."""
        try:
            self._one_trip(lease)(lease.dbapi_connection, None, None)
        except self.dbapi_error as exc:
            self._end_failed(lease)
            raise self._database_failure(exc, index) from exc

    def _database_failure(self, exc: BaseException, index: int) -> StepFailed:
        """The step failure of a database error at step ``index`` (no results to keep)."""
        return StepFailed(
            protocol.ERROR_STATUS[protocol.DATABASE_ERROR],
            self._database_error(exc, index, None),
        )

    def _names_outcome_table(self, exc: BaseException) -> bool:
        """Whether a driver error may be about the outcome table (psycopg's diagnostics).

        An error naming no table counts (a missing table names none).
        """
        assert self.outcomes is not None
        table = getattr(getattr(exc, "diag", None), "table_name", None)
        return table is None or table == self.outcomes.table.name

    def _close_cursors(self, lease: Lease) -> None:
        """Close the lease's open results before its transaction ends.

        Their rows cannot be fetched after it anyway; an unbuffered MySQL
        result must be off the socket before the next command.
        """
        for cursor in lease.cursors.values():
            try:
                cursor.close()
            except self.dbapi_error:
                pass  # the transaction ends next, which closes it too
        lease.cursors.clear()

    def _end_failed(self, lease: Lease) -> None:
        """Roll back and end a transaction (one whose commit failed, or a rollback).

        A connection that cannot roll back is invalidated: the pool drops it.
        """
        try:
            lease.dbapi_connection.rollback()
        except Exception as exc:  # noqa: BLE001 - a lost connection fails in driver-specific ways
            lease.invalidate(f"its rollback failed ({type(exc).__name__}: {exc})")
        self.registry.end(lease)

    def _run_step(self, lease: Lease, index: int, step: dict) -> dict:
        op = step["op"]
        if op in (protocol.EXECUTE, protocol.EXECUTE_MANY):
            return self._watched(index, lease, self._execute, lease, step)
        if op == protocol.FETCH:
            return self._watched(index, lease, self._fetch, lease, step)
        if op == protocol.CLOSE:
            cursor = lease.cursors.pop(step["cursor"], None)
            if cursor is not None:
                cursor.close()
            return {}
        if op == protocol.ROLLBACK:
            # Any rollback ends the lease, whatever the database says: a
            # connection the database closed (pg_terminate_backend, KILL)
            # has no transaction left, and is discarded, not pooled again.
            self._close_cursors(lease)
            self._end_failed(lease)
            return {}
        if op == protocol.EXECUTE_SCRIPT:
            statements = step.get("statements") or split_script(step["sql"])
            return self._run_statements(lease, index, statements, "")
        # begin: options applied when the lease was opened; then the prologue,
        # session settings only (the session guard saw to it): no write.
        wrote = lease.wrote
        result = self._run_statements(lease, index, step.get("session", ()), "session")
        lease.wrote = wrote
        return result

    def _run_statements(
        self, lease: Lease, index: int, statements: Any, what: str
    ) -> dict:
        """Run ``statements`` (a script's, or a begin's ``session`` prologue) as step
        ``index``; their rows are dropped.  A failure names the statement."""
        for position, sql in enumerate(statements):
            statement = {"op": protocol.EXECUTE, "sql": sql, "params": None}
            try:
                result = self._watched(index, lease, self._execute, lease, statement)
            except StepFailed as failed:
                if what:
                    _name_statement(
                        failed.body["error"],
                        f"{what} statement {position} ({sql[:80]!r}), run at the start "
                        "of the transaction: ",
                    )
                raise
            cursor = lease.cursors.pop(result.get("cursor") or "", None)
            if cursor is not None:
                cursor.close()
        return {"rowcount": -1} if not what else {}

    def _connect_for_kill(self) -> Any:
        dialect = self.registry.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.registry.engine.url)
        return dialect.connect(*cargs, **cparams)

    def _watched(self, index: int, lease: Lease, fn: Any, *args: Any) -> Any:
        """Run ``fn`` under the watchdog; a call it stopped fails and ends the lease.

        The deadline is the statement timeout (plus grace) or the end of the
        longest transaction allowed, whichever comes first.  A call that ran
        for the whole statement timeout fails too, whatever the driver
        answered: MariaDB stops ``BENCHMARK()`` at ``max_statement_time`` and
        returns 0 with only a warning.
        """
        started = time.monotonic()
        timeout = self.statement_timeout_seconds
        deadline, reason = started + timeout + watchdog_grace(timeout), STATEMENT
        limit = self.registry.max_transaction_seconds
        if limit is not None and lease.created + limit < deadline:
            deadline, reason = lease.created + limit, TRANSACTION
        cancel = self.backend.canceller(lease.dbapi_connection, self.kill_connect)
        terminate = self.backend.terminator(lease.dbapi_connection, self.kill_connect)
        watch = self.watchdog.arm(deadline, reason, cancel, terminate)
        try:
            result = self._guard(index, lease, fn, *args)
        except StepFailed:
            self.watchdog.disarm(watch)
            if watch.fired:
                self._stopped(index, lease, watch)
            raise
        self.watchdog.disarm(watch)
        if watch.fired or time.monotonic() - started >= timeout:
            watch.fired = watch.fired or STATEMENT
            self._stopped(index, lease, watch)
        return result

    def _stopped(self, index: int, lease: Lease, watch: Watch) -> None:
        """End the lease of a call the watchdog stopped; raise its failure.

        The connection is dropped, not pooled: a cancel sent just as the
        call ended could otherwise hit the next lease's first statement.
        """
        if watch.fired == TRANSACTION:
            self.registry.expire(lease, "open too long", invalidate=True)
            message = (
                f"statement cancelled: the transaction was open longer than the limit "
                f"of {self.registry.max_transaction_seconds:g} s; the server rolled it "
                "back and released its locks"
            )
            code = protocol.TRANSACTION_EXPIRED
            raise StepFailed(
                protocol.ERROR_STATUS[code],
                protocol.error_body(code, message, step=index, timeout=TRANSACTION),
            )
        self.registry.expire(lease, "statement timeout", invalidate=True)
        message = (
            f"statement cancelled: it ran past the server's statement timeout of "
            f"{self.statement_timeout_seconds:g} s; the server rolled the transaction "
            "back and released its locks"
        )
        raise StepFailed(
            protocol.ERROR_STATUS[protocol.DATABASE_ERROR],
            protocol.error_body(
                protocol.DATABASE_ERROR,
                message,
                dbapi_class="OperationalError",
                args=[message],
                step=index,
                timeout=STATEMENT,
            ),
        )

    def _guard(self, index: int, lease: Lease | None, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except BadParameters as exc:
            field = "seq_of_params" if args[-1]["op"] == protocol.EXECUTE_MANY else "params"
            raise StepFailed(
                protocol.ERROR_STATUS[protocol.BAD_REQUEST],
                protocol.error_body(
                    protocol.BAD_REQUEST,
                    f"step {index}: the {self.driver} driver cannot bind {field!r}: {exc}",
                    step=index,
                    txn=lease.id if lease is not None and not lease.ended else None,
                ),
            ) from exc
        except self.dbapi_error as exc:
            raise StepFailed(
                protocol.ERROR_STATUS[protocol.DATABASE_ERROR],
                self._database_error(exc, index, lease),
            ) from exc

    def _database_error(self, exc: BaseException, index: int, lease: Lease | None) -> dict:
        try:
            args = to_wire(list(exc.args))
        except TypeError:
            args = [str(exc)]
        return protocol.error_body(
            protocol.DATABASE_ERROR,
            str(exc),
            dbapi_class=self.backend.dbapi_class_name(exc),
            args=args,
            step=index if index >= 0 else None,
            txn=lease.id if lease is not None and not lease.ended else None,
            **self.backend.error_details(exc),
        )

    def _execute(self, lease: Lease, step: dict) -> dict:
        connection = lease.dbapi_connection
        for open_cursor in lease.cursors.values():
            open_cursor.settle()  # an unbuffered MySQL result must leave the socket
        self.statements += 1
        if not lease.wrote and may_write(step["sql"]):
            lease.wrote = True
        if not lease.reset_before_answer and may_take_session_lock(
            step["sql"], self.backend.lexer_dialect
        ):
            lease.reset_before_answer = True
        if (
            self.streaming
            and step["op"] == protocol.EXECUTE
            and cursorable(step["sql"])
            and getattr(connection, "autocommit", False) is not True
        ):
            return self._execute_streamed(lease, step)
        if lease.portals is not None:
            lease.portals.after(step["sql"])
        backend = self.backend
        cursor = backend.prepare_cursor(connection.cursor())
        try:
            with backend.statement_deadline(connection, self.statement_timeout_seconds):
                try:
                    if step["op"] == protocol.EXECUTE_MANY:
                        cursor.executemany(
                            step["sql"],
                            [backend.adapt_params(params) for params in step["seq_of_params"]],
                        )
                    elif step.get("params") is None:
                        cursor.execute(step["sql"])
                    else:
                        cursor.execute(step["sql"], backend.adapt_params(step["params"]))
                except _PARAMETER_ERRORS as exc:
                    # Not a database error: the driver refused the parameters (a
                    # value it cannot bind, a missing name) before sending anything.
                    raise BadParameters(f"{type(exc).__name__}: {exc}") from exc
                # SQLite makes rows as they are fetched: the first page is
                # work of this statement, under the same deadline.
                return self._result(lease, cursor)
        except BaseException:
            cursor.close()
            raise

    def _execute_streamed(self, lease: Lease, step: dict) -> dict:
        """Run a query through its backend's server-side cursor (:mod:`.cursors`)."""
        backend = self.backend
        params = step.get("params")
        with backend.statement_deadline(lease.dbapi_connection, self.statement_timeout_seconds):
            try:
                params = None if params is None else backend.adapt_params(params)
                cursor, server_cursor = backend.open_stream(
                    lease, step["sql"], params, self.page_size
                )
            except _PARAMETER_ERRORS as exc:
                raise BadParameters(f"{type(exc).__name__}: {exc}") from exc
            try:
                return self._result(lease, cursor, server_cursor)
            except BaseException:
                server_cursor.close()
                raise

    def _result(
        self, lease: Lease, cursor: Any, server_cursor: ServerCursor | None = None
    ) -> dict:
        lastrowid = getattr(cursor, "lastrowid", None)
        result: dict[str, Any] = {
            "rowcount": cursor.rowcount,
            "lastrowid": to_wire(lastrowid) if lastrowid is not None else None,
        }
        description = cursor.description
        if description is None:
            cursor.close()
            return result
        result["description"] = [_column(column) for column in description]
        streamed = server_cursor is not None
        if server_cursor is None:
            server_cursor = ServerCursor(cursor, [])
        rows, done = server_cursor.fetch(self.page_size)
        result.update(_page(rows))
        if streamed:
            # A cursor knows its row count only once it has read every row.
            result["rowcount"] = len(rows) if done else -1
        if done:
            server_cursor.close()
        else:
            cursor_id = secrets.token_urlsafe(8)
            lease.cursors[cursor_id] = server_cursor
            result["cursor"] = cursor_id
        return result

    def _fetch(self, lease: Lease, step: dict) -> dict:
        server_cursor = lease.cursors.get(step["cursor"])
        if server_cursor is None:
            raise StepFailed(
                protocol.ERROR_STATUS[protocol.UNKNOWN_CURSOR],
                protocol.error_body(
                    protocol.UNKNOWN_CURSOR,
                    f"no open cursor {step['cursor']!r} in this transaction",
                    txn=lease.id,
                ),
            )
        try:
            with self.backend.statement_deadline(
                lease.dbapi_connection, self.statement_timeout_seconds
            ):
                rows, done = server_cursor.fetch(min(step["n"], self.page_size))
        except CursorDropped as exc:
            server_cursor.close()
            del lease.cursors[step["cursor"]]
            raise StepFailed(
                protocol.ERROR_STATUS[protocol.UNKNOWN_CURSOR],
                protocol.error_body(protocol.UNKNOWN_CURSOR, str(exc), txn=lease.id),
            ) from exc
        if done:
            server_cursor.close()
            del lease.cursors[step["cursor"]]
        return {**_page(rows), "done": done}
