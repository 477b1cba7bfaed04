"""The statements a pipeline request runs, as the guards must see them.

Two steps run statements the request does not spell as ``execute`` steps:
a ``begin`` step's ``session`` prologue (connect-time ``SET``/``PRAGMA``
statements, run first on the leased connection) and an ``execute_script``
step (SQLite's ``executescript``, split by :func:`session_proxy_server.sql.
scripts.split_script`).  :func:`guard_view` lists every statement as an
``execute`` step with the index of the request step it belongs to, so the
text guard, the session guard and the policy check each of them exactly as
they check an ``execute`` step; :func:`checked` runs a guard over that view
and reports a refusal at the request step's index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from session_proxy.wire import protocol
from session_proxy.wire.errors import ProtocolError

from .sql.lexer import lex, split_statements
from .sql.policy import PolicyViolation
from .sql.scripts import MAX_SCRIPT_STATEMENTS, split_script
from .sql.session_guard import IsolationViolation

#: The refusals a guard raises; each declares the ``step`` it refused.
StepRefusal = (ProtocolError, PolicyViolation, IsolationViolation)

__all__ = ["check_sessions", "checked", "guard_view", "script_statements"]


def script_statements(step: dict[str, Any], index: int, dialect: str) -> list[str]:
    """The statements of an ``execute_script`` step; :class:`ProtocolError` if refused."""
    if dialect != "sqlite":
        raise ProtocolError(
            f"step {index} (execute_script): scripts are sqlite3's executescript, "
            f"for SQLite only; this server fronts {dialect}"
        )
    statements = split_script(step["sql"])
    if len(statements) > MAX_SCRIPT_STATEMENTS:
        raise ProtocolError(
            f"step {index} (execute_script): the script holds {len(statements)} "
            f"statements, over the limit of {MAX_SCRIPT_STATEMENTS}"
        )
    return statements


#: What a ``session`` prologue statement may be: one setting, as the client records.
SESSION_KEYWORDS = frozenset({"SET", "PRAGMA"})


def check_sessions(steps: list[dict[str, Any]], dialect: str) -> None:
    """Raise :class:`ProtocolError` unless every begin's ``session`` entry is one
    ``SET`` or ``PRAGMA`` statement as the backend reads it.

    The prologue runs again at the start of every transaction, so anything
    else (a second statement after a ``;``) has no place in it.
    """
    for index, step in enumerate(steps):
        if step["op"] == protocol.BEGIN:
            _check_session(step.get("session", []), index, dialect)


def _check_session(statements: list[str], index: int, dialect: str) -> None:
    for position, sql in enumerate(statements):
        tokens, _ = lex(sql, dialect)
        parts = split_statements(tokens)
        if len(parts) != 1 or parts[0][0][1].upper() not in SESSION_KEYWORDS:
            raise ProtocolError(
                f"step {index} (begin): 'session'[{position}] must be one SET or PRAGMA "
                f"statement, got {len(parts)} statement(s): {sql[:80]!r}"
            )


def guard_view(
    steps: list[dict[str, Any]], dialect: str
) -> tuple[list[dict[str, Any]], list[int] | None]:
    """``(view, origin)``: the steps with every prologue and script statement as an
    ``execute`` step, and the request index of each view step (None: the view is
    ``steps`` itself).  Splits each script once and keeps its statements in the
    step (``"statements"``) for the executor."""
    if not any(
        step["op"] == protocol.EXECUTE_SCRIPT or step.get("session") for step in steps
    ):
        return steps, None
    view: list[dict[str, Any]] = []
    origin: list[int] = []
    for index, step in enumerate(steps):
        if step["op"] == protocol.EXECUTE_SCRIPT:
            step["statements"] = script_statements(step, index, dialect)
            extra = step["statements"]
        else:
            extra = step.get("session", []) if step["op"] == protocol.BEGIN else []
            view.append(step)
            origin.append(index)
        for sql in extra:
            view.append({"op": protocol.EXECUTE, "sql": sql, "params": None})
            origin.append(index)
    return view, origin


def checked(
    view: list[dict[str, Any]], origin: list[int] | None, check: Callable[..., None],
    *args: Any,
) -> None:
    """``check(view, *args)``; a refusal's ``step`` is renamed to the request's index."""
    try:
        check(view, *args)
    except StepRefusal as exc:
        step = exc.step
        if origin is not None and step is not None and 0 <= step < len(origin):
            exc.step = origin[step]
        raise
