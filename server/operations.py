"""The server half of the logical API.

The server exposes only the operations defined in modules named at start-up
(``--operations session_proxy_bench.workload.operations``); a client can never make it
import anything.  Each call runs the registered function on a new session in
one transaction: committed when it returns, rolled back when it raises or
when its result cannot be encoded.

A call that carries an idempotency key runs at most once: if it wrote
anything, its answer is recorded in the outcome table in its own
transaction (:mod:`session_proxy_server.outcomes`), and a retry gets that answer back; an
operation's exception is remembered on this instance for the same window.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import session_proxy.wire.values as values
from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps
from session_proxy.wire.errors import ProtocolError
from session_proxy.wire.operations import Operation, operations

from . import requests_validation
from .idempotency import Idempotency, Replay, Request, request_of
from .outcomes import OutcomeStore
from .sql.writes import may_write


class OperationFailed(Exception):
    """A call did not produce a result; ``code`` and ``body`` describe why."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra
        #: What the call cost before it failed (operations that ran only).
        self.statements = 0
        self.transaction_seconds: float | None = None


class CallResult:
    """What one call answered (encoded) and what it cost on the server."""

    def __init__(
        self,
        status: int,
        payload: bytes,
        statements: int,
        transaction_seconds: float | None,
        replayed: bool = False,
    ) -> None:
        self.status = status
        self.payload = payload
        self.statements = statements
        self.transaction_seconds = transaction_seconds
        #: Answered from the record of an earlier attempt; nothing ran.
        self.replayed = replayed


def _conflict(message: str) -> OperationFailed:
    """The 409 for a key that names another call's outcome."""
    return OperationFailed(protocol.IDEMPOTENCY_CONFLICT, message)


class _AlreadyRecorded(Exception):
    """Another attempt of the same call committed first."""


class OperationHost:
    """Runs the operations of the named modules against ``engine``."""

    def __init__(
        self,
        engine: Engine,
        module_names: Iterable[str],
        trusted_clients: bool = False,
        outcomes: OutcomeStore | None = None,
    ) -> None:
        self.module_names = tuple(module_names)
        self.outcomes = outcomes
        #: Replay, conflict checks and recording of keyed calls.
        self.idempotency = Idempotency(outcomes, _conflict)
        #: Accept pickled (dill) arguments: gives callers code execution here.
        self.trusted_clients = trusted_clients
        for module in self.module_names:
            importlib.import_module(module)
        self.operations: dict[str, Operation] = {
            name: op
            for name, op in operations().items()
            if op.fn.__module__ in self.module_names
        }
        self.session_factory = sessionmaker(bind=engine, expire_on_commit=False)
        self._local = threading.local()
        event.listen(engine, "before_cursor_execute", self._count_statement)

    def _count_statement(
        self, conn: Any, cursor: Any, statement: str, *args: Any
    ) -> None:
        counter = getattr(self._local, "statements", None)
        if counter is not None:
            self._local.statements = counter + 1
            if may_write(statement):
                self._local.wrote = True

    def call(
        self,
        name: str,
        body: Any,
        subject: str = "",
        key: str | None = None,
        retry: bool = False,
        role: str = "",
        digest: str = "",
    ) -> CallResult:
        """Decode, check and run one call; raise :class:`OperationFailed`.

        With an idempotency ``key``, a call already answered for ``subject``
        is answered from its record instead (this instance's memory always,
        the outcome table on a ``retry``), if the record is of the same
        ``role`` and request ``digest``; a record of another is a 409.
        """
        request = request_of((subject, role), key, digest)
        try:
            return self._call_once(name, body, request, retry)
        except Replay as replay:
            outcome = self.idempotency.replayed(replay.outcome)
            return CallResult(outcome.status, outcome.body, 0, None, replayed=True)

    def _call_once(
        self, name: str, body: Any, request: Request | None, retry: bool
    ) -> CallResult:
        """Run the call unless ``request`` was answered; raise :class:`Replay` if so."""
        if request is None:
            with values.pickles_allowed(self.trusted_clients):
                return self._call(name, body, None)
        # This instance's memory always (cheap), the table on a retry.
        self.idempotency.check(request, database=retry)
        with values.pickles_allowed(self.trusted_clients):
            try:
                result = self._call(name, body, request)
            except _AlreadyRecorded:
                self.idempotency.check(request)
                raise
            except OperationFailed as failed:
                if failed.statements:
                    self.idempotency.failed(request, failed.code, str(failed), **failed.extra)
                raise
        self.idempotency.remember(request, request.outcome(result.status, result.payload))
        return result

    def _call(self, name: str, body: Any, request: Request | None) -> CallResult:
        operation = self.operations.get(name)
        if operation is None:
            raise OperationFailed(
                protocol.UNKNOWN_OPERATION,
                f"unknown operation {name!r}; this server exposes "
                f"{len(self.operations)} operations from {list(self.module_names)}",
            )
        try:
            raw_args, raw_kwargs = requests_validation.parse_operation_request(body)
            args = tuple(values.from_wire(arg) for arg in raw_args)
            kwargs = {key: values.from_wire(value) for key, value in raw_kwargs.items()}
        except ProtocolError as exc:
            raise OperationFailed(exc.code, str(exc)) from None
        except values.UnsafePayload as exc:
            raise OperationFailed(protocol.UNSAFE_PAYLOAD, str(exc)) from None
        except ValueError as exc:
            raise OperationFailed(protocol.BAD_REQUEST, f"bad argument value: {exc}") from None
        try:
            operation.check_arguments(args, kwargs)
        except TypeError as exc:
            raise OperationFailed(
                protocol.BAD_ARGUMENTS, f"bad arguments for operation {name!r}: {exc}"
            ) from None

        self._local.statements = 0
        self._local.wrote = False
        started = time.perf_counter()

        def record(session: Any, encoded: Any) -> None:
            if request is None or not self.idempotency.records or not self._local.wrote:
                return
            try:
                self.idempotency.record_in_session(
                    session, request, request.outcome(200, dumps({"result": encoded}))
                )
            except sa_exc.IntegrityError:
                raise _AlreadyRecorded() from None

        try:
            result = operation.run_in_transaction(
                self.session_factory, args, kwargs, encode=values.to_wire, before_commit=record
            )
        except _AlreadyRecorded:
            self._local.statements = None
            raise
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            failed = OperationFailed(
                protocol.OPERATION_ERROR,
                f"operation {name!r} raised {type(exc).__name__}: {exc}",
                exception=values.encode_exception(exc),
            )
            failed.statements = self._local.statements
            failed.transaction_seconds = time.perf_counter() - started
            raise failed from exc
        finally:
            statements = self._local.statements
            self._local.statements = None
        return CallResult(
            200, dumps({"result": result}), statements, time.perf_counter() - started
        )
