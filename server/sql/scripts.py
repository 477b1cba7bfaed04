"""Splitting a SQLite script into statements where SQLite itself would.

sqlite3's ``executescript`` hands a whole script to SQLite, which reads one
complete statement at a time.  The server checks every statement on its
own (guards, policy) and runs them one by one, so it splits the script first
with SQLite's own rule, ``sqlite3.complete_statement``: text up to a ``;``
is a statement once SQLite says it is complete, so a ``;`` inside a string
literal, a quoted name, a comment or a trigger's ``BEGIN ... END`` body does
not end one.  Pieces holding only comments and whitespace are dropped.
"""

from __future__ import annotations

import sqlite3

from .lexer import lex

__all__ = ["MAX_SCRIPT_STATEMENTS", "split_script"]

#: Statements one script may hold.
MAX_SCRIPT_STATEMENTS = 1_000


def _has_tokens(sql: str) -> bool:
    tokens, _problem = lex(sql, "sqlite")
    return any(token[0] != ";" for token in tokens)


def split_script(sql: str) -> list[str]:
    """The statements of ``sql``, in order, each as SQLite would read it."""
    statements: list[str] = []
    pending = ""
    parts = sql.split(";")
    for position, part in enumerate(parts):
        pending += part
        if position == len(parts) - 1:
            break
        pending += ";"
        if sqlite3.complete_statement(pending):
            if _has_tokens(pending):
                statements.append(pending.strip())
            pending = ""
    if pending.strip() and _has_tokens(pending):
        statements.append(pending.strip())
    return statements
