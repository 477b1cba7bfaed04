"""Runs the steps of one pipeline request on a leased connection.

The executor is the only code that touches a driver connection.  It executes
statements exactly as sent (SQL compiled by the client's copy of this
server's driver dialect), keeps a server-side cursor for results longer than
one page, and turns driver exceptions into protocol error bodies that keep
the PEP 249 class, message, args and backend error code.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from session_proxy import protocol
from session_proxy.codec import encode_rows, to_wire

from .drivers import (
    adapt_params,
    dbapi_class_name,
    error_details,
    prepare_cursor,
    statement_deadline,
)
from .leases import Lease, LeaseRegistry

#: Key under which :meth:`Executor.run` reports how long an ended
#: transaction was open; the app moves it into a response header.
TRANSACTION_SECONDS = "_transaction_seconds"


class StepFailed(Exception):
    """A step failed; ``body`` is the error body, ``status`` its HTTP status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status = status
        self.body = body


class ServerCursor:
    """A driver cursor with rows left to send, one row peeked ahead."""

    def __init__(self, cursor: Any, peeked: list[Any]) -> None:
        self.cursor = cursor
        self.peeked = peeked

    def fetch(self, n: int) -> tuple[list[Any], bool]:
        """Up to ``n`` rows and whether the cursor is exhausted."""
        rows = self.peeked + list(self.cursor.fetchmany(n + 1 - len(self.peeked)))
        if len(rows) > n:
            self.peeked = rows[n:]
            return rows[:n], False
        self.peeked = []
        return rows, True

    def close(self) -> None:
        """Close the driver cursor."""
        self.cursor.close()


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
        if self.group is not None and step.get("check_group") != self.group:
            self.finish(lease)

    def after(self, index: int, step: dict, result: dict) -> None:
        group = step.get("check_group")
        if group is None:
            return
        self.group = group
        self.expected += step["expect_rowcount"]
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
    ) -> None:
        self.registry = registry
        self.driver = driver
        self.page_size = page_size
        self.dbapi_error = dbapi_error
        self.statement_timeout_seconds = statement_timeout_seconds
        self.statements = 0

    def run(
        self, txn: str | None, steps: list[dict], owner: tuple[str, str] = ("", "")
    ) -> dict[str, Any]:
        """Run ``steps`` for ``owner`` (subject, role); return the response body.

        ``steps`` have been validated, checked against the caller's policy
        and their parameters decoded.  Raises :class:`StepFailed`.
        """
        if txn is None:
            if not any(
                step["op"] in (protocol.EXECUTE, protocol.EXECUTE_MANY) for step in steps
            ):
                # Nothing to run: committing or closing what was never begun.
                return {"txn": None, "results": [{} for _ in steps]}
            options = steps[0].get("options", {}) if steps[0]["op"] == protocol.BEGIN else {}
            lease = self._guard(-1, None, self.registry.open, options, owner)
        else:
            # Validation allows "begin" only without a txn, so every step here
            # needs the lease's connection.
            lease = self.registry.acquire(txn, owner)
        results: list[dict] = []
        check = _RowcountCheck()
        try:
            for index, step in enumerate(steps):
                check.before(step, lease)
                result = self._run_step(lease, index, step)
                check.after(index, step, result)
                results.append(result)
            check.finish(lease)
            body = {"txn": None if lease.ended else lease.id, "results": results}
            if lease.ended:
                body[TRANSACTION_SECONDS] = time.monotonic() - lease.created
            return body
        finally:
            self.registry.release(lease)

    def _run_step(self, lease: Lease, index: int, step: dict) -> dict:
        op = step["op"]
        if op in (protocol.EXECUTE, protocol.EXECUTE_MANY):
            return self._guard(index, lease, self._execute, lease, step)
        if op == protocol.FETCH:
            return self._guard(index, lease, self._fetch, lease, step)
        if op == protocol.CLOSE:
            cursor = lease.cursors.pop(step["cursor"], None)
            if cursor is not None:
                cursor.close()
            return {}
        if op in (protocol.COMMIT, protocol.ROLLBACK):
            conn = lease.dbapi_connection
            self._guard(index, lease, conn.commit if op == protocol.COMMIT else conn.rollback)
            self.registry.end(lease)
            return {}
        return {}  # begin: applied when the lease was opened

    def _guard(self, index: int, lease: Lease | None, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
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
            dbapi_class=dbapi_class_name(exc),
            args=args,
            step=index if index >= 0 else None,
            txn=lease.id if lease is not None and not lease.ended else None,
            **error_details(exc),
        )

    def _execute(self, lease: Lease, step: dict) -> dict:
        connection = lease.dbapi_connection
        cursor = prepare_cursor(connection.cursor(), self.driver)
        self.statements += 1
        try:
            with statement_deadline(connection, self.driver, self.statement_timeout_seconds):
                if step["op"] == protocol.EXECUTE_MANY:
                    cursor.executemany(
                        step["sql"], [adapt_params(params) for params in step["seq_of_params"]]
                    )
                elif step.get("params") is None:
                    cursor.execute(step["sql"])
                else:
                    cursor.execute(step["sql"], adapt_params(step["params"]))
        except BaseException:
            cursor.close()
            raise
        return self._result(lease, cursor)

    def _result(self, lease: Lease, cursor: Any) -> dict:
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
        server_cursor = ServerCursor(cursor, [])
        rows, done = server_cursor.fetch(self.page_size)
        result.update(_page(rows))
        if done:
            cursor.close()
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
        rows, done = server_cursor.fetch(min(step["n"], self.page_size))
        if done:
            server_cursor.close()
            del lease.cursors[step["cursor"]]
        return {**_page(rows), "done": done}
