"""The statement text guard: refuse SQL the database would read differently.

Every ``execute`` / ``execute_many`` step passes through :func:`check_steps`
(the SQL text) and :func:`check_params` (its string parameters) before
anything runs, on every backend, with or without a policy.  A statement the
driver or the database would cut, rewrite or read differently from what the
server's lexer saw is refused with 400 ``unsafe_statement`` naming the step
and the problem; nothing of the request runs.

What is refused, and why (measured against psycopg 3 / PostgreSQL 15,
pymysql / MariaDB 10.11 and sqlite3; see docs/security.md):

- NUL anywhere in the SQL text: libpq sends a C string, so PostgreSQL runs
  only the text before it (``-- <NUL>\\nWHERE ...`` lost its WHERE); MariaDB
  reads it inside comments and literals, sqlite3 refuses it.  Other C0
  control characters but tab, newline and carriage return: MariaDB reads
  vertical tab and form feed as spaces where PostgreSQL does not, and MySQL
  ends a ``--`` comment marker at any control character.
- Lone surrogates (text that is not Unicode) in SQL or string parameters:
  no driver can encode them.
- Text longer than :data:`MAX_STATEMENT_CHARS`, requests whose statements
  add up to more than :data:`MAX_REQUEST_SQL_CHARS`, and parentheses nesting
  deeper than :data:`session_proxy_server.sql.lexer.MAX_NESTING`: refused before any
  further work.
- Whatever the backend's own lexer (:func:`session_proxy_server.sql.lexer.lex` told the
  dialect) cannot be sure it reads as the backend does: MySQL executable
  comments, ``--`` without a following space on MySQL, quoted text whose
  end depends on backslash escapes (``sql_mode`` / ``standard_conforming_
  strings`` are session settings a client can change), ``$`` and ``#`` /
  ``@`` parameters outside quotes on SQLite and MySQL, non-ASCII characters
  outside quotes and comments, unterminated quotes and comments, and for
  the pyformat drivers any ``%`` the driver would substitute somewhere
  other than a ``%s`` / ``%(name)s`` placeholder (inside literals and
  comments too), or a placeholder sent without parameters, which the
  driver leaves as text.
- Statements that change the connection's character set (``SET NAMES``,
  ``character_set_client``, PostgreSQL ``client_encoding``): the driver
  keeps encoding in its own charset, and under GBK a bound parameter's
  escaping backslash becomes part of a multibyte character (measured:
  ``SET NAMES gbk`` then a parameter ``中' OR 1=1 -- `` updated every row).
"""

from __future__ import annotations

import re
from typing import Any

from session_proxy.wire import protocol
from session_proxy.wire.errors import ProtocolError

from .lexer import NestingTooDeep, lex

__all__ = [
    "MAX_REQUEST_SQL_CHARS", "MAX_STATEMENT_CHARS", "UnsafeStatement",
    "check_params", "check_sql", "check_steps", "family",
]

#: Longest SQL text one step may carry (characters).  Reading a statement
#: (guard, policy, write detection) is linear but costs a few microseconds
#: per character, so the text is bounded well below the body limit;
#: SQLAlchemy's largest texts, batched multi-row INSERTs, stay far below it.
MAX_STATEMENT_CHARS = 1024 * 1024
#: Most SQL text all the steps of one request may carry together.
MAX_REQUEST_SQL_CHARS = 4 * 1024 * 1024

_PYFORMAT_DRIVERS = frozenset({"psycopg", "pymysql"})
# NUL and lone surrogates: refused anywhere.
_BAD_CHAR_RE = re.compile("[\x00\ud800-\udfff]")
# The other C0 controls but \t \n \r: data inside a string literal, which
# every backend stores as written; refused anywhere else (see check_sql).
_CONTROL_RE = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Words that change the connection character set in a SET statement.
_CHARSET_WORDS = frozenset({"NAMES", "CHARSET", "CHARACTER", "CLIENT_ENCODING"})
_CHARSET_PREFIXES = ("CHARACTER_SET_", "COLLATION_")


class UnsafeStatement(ProtocolError):
    """A step's text would not run as the server read it; ``step`` is its index."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message, protocol.UNSAFE_STATEMENT)
        self.step = step


def _describe(char: str) -> str:
    if char == "\x00":
        return "a NUL character"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate (U+{ord(char):04X}, not Unicode text)"
    return f"the control character U+{ord(char):04X}"


def _refuse(index: int, op: str, problem: str) -> UnsafeStatement:
    return UnsafeStatement(
        f"step {index} ({op}): statement refused before it ran: {problem}; "
        "the database would not read this text the way the server checked it",
        index,
    )


def _changes_charset(tokens: tuple[Any, ...]) -> bool:
    """Whether one of the statements is a SET naming a character-set setting."""
    statement_start = True
    in_set = False
    for kind, _text, upper in tokens:
        if kind == ";":
            statement_start, in_set = True, False
            continue
        if statement_start and kind != "(":
            in_set = upper == "SET"
            statement_start = False
        if in_set and kind == "w" and (
            upper in _CHARSET_WORDS or upper.startswith(_CHARSET_PREFIXES)
        ):
            return True
    return False


def check_sql(sql: str, index: int, op: str, dialect: str, driver: str, has_params: bool) -> None:
    """Raise :class:`UnsafeStatement` unless ``sql`` reads the same to the server and database."""
    if len(sql) > MAX_STATEMENT_CHARS:
        raise _refuse(
            index, op, f"the text is {len(sql)} characters long, over the limit of "
            f"{MAX_STATEMENT_CHARS}",
        )
    bad = _BAD_CHAR_RE.search(sql)
    if bad is not None:
        raise _refuse(index, op, f"{_describe(bad.group())} at character {bad.start()}")
    pyformat = has_params if driver in _PYFORMAT_DRIVERS else None
    try:
        tokens, problem = lex(sql, dialect, pyformat)
    except NestingTooDeep as exc:
        raise _refuse(index, op, str(exc)) from None
    if problem is not None:
        raise _refuse(index, op, f"{problem} ({dialect} reading)")
    _check_controls(sql, tokens, index, op)
    if dialect in ("mysql", "postgresql") and _changes_charset(tokens):
        raise _refuse(
            index, op, "it changes the connection's character set, which the driver "
            "would keep encoding in the old one",
        )


def _check_controls(sql: str, tokens: tuple[Any, ...], index: int, op: str) -> None:
    """Refuse C0 control characters anywhere but inside string literals.

    Outside them the backends disagree (MariaDB reads vertical tab and form
    feed as spaces, PostgreSQL does not; MySQL ends a ``--`` marker at any
    control character).  Inside a string literal they are data (a table
    comment of SQLAlchemy's own test suite has some).  Every control
    character of the text must be found in the literal tokens; quoted
    identifiers do not count, since their text may be decoded.
    """
    found = _CONTROL_RE.search(sql)
    if found is None:
        return
    in_literals = sum(
        len(_CONTROL_RE.findall(text)) for kind, text, _upper in tokens if kind == "l"
    )
    if in_literals < len(_CONTROL_RE.findall(sql)):
        raise _refuse(
            index, op, f"{_describe(found.group())} at character {found.start()}, "
            "outside a string literal",
        )


def family(dialect: str) -> str:
    """The lexer's name for a SQLAlchemy dialect name (mariadb reads as mysql)."""
    return "mysql" if dialect == "mariadb" else dialect


def check_steps(steps: list[dict[str, Any]], dialect: str, driver: str) -> None:
    """Check the SQL text of every statement step (parameters still encoded)."""
    dialect = family(dialect)
    total = 0
    for index, step in enumerate(steps):
        op = step["op"]
        total += len(step.get("sql") or "")
        if total > MAX_REQUEST_SQL_CHARS:
            raise _refuse(
                index, op, f"the request's statements add up to more than "
                f"{MAX_REQUEST_SQL_CHARS} characters",
            )
        if op == protocol.EXECUTE:
            check_sql(step["sql"], index, op, dialect, driver, step.get("params") is not None)
        elif op == protocol.EXECUTE_MANY:
            check_sql(step["sql"], index, op, dialect, driver, True)


def _bad_value(value: Any, depth: int = 0) -> str | None:
    if isinstance(value, str):
        match = _SURROGATE_RE.search(value)
        return None if match is None else _describe(match.group())
    if depth < 64:
        if isinstance(value, (list, tuple)):
            items: Any = value
        elif isinstance(value, dict):
            items = [*value.keys(), *value.values()]
        else:
            return None
        for item in items:
            found = _bad_value(item, depth + 1)
            if found is not None:
                return found
    return None


def check_params(steps: list[dict[str, Any]]) -> None:
    """Check the decoded string parameters of every statement step."""
    for index, step in enumerate(steps):
        for params in (step.get("params"), *step.get("seq_of_params", ())):
            found = _bad_value(params)
            if found is not None:
                raise UnsafeStatement(
                    f"step {index} ({step['op']}): parameter refused before it ran: it "
                    f"holds {found}, which the driver cannot send as text",
                    index,
                )

