"""Classification: what one SQL text does, read without a database.

:func:`classify` reports the kind of a text (select, insert, update,
delete, ddl, transaction, other; the most restrictive for several
statements), whether it holds several statements, the tables it reads and
writes, the functions it calls, whether it takes row locks, and why a
backend might read it differently (:attr:`StatementInfo.ambiguity`).
Tables come from two independent readers, the hand-written
:class:`~session_proxy_server.sql.scanner.Scanner` and sqlglot
(:func:`session_proxy_server.sql.tables.parser_tables`), and are their union; when the
second cannot parse the text, :attr:`StatementInfo.table_doubt` says so.

Table detection errs on the side of reporting too much.  Do not use it to
decide whether a transaction wrote (that is :mod:`session_proxy_server.sql.writes`, which
is stricter), and do not trust the kind of a text with an ambiguity.
Results are cached with :func:`functools.lru_cache`.
"""

from __future__ import annotations

import dataclasses
import functools

from .keywords import DDL_WORDS, DML_KINDS, KIND_SEVERITY, TRANSACTION_WORDS
from .lexer import Token, lex, split_statements
from .scanner import Scanner
from .tables import parser_tables

__all__ = ["StatementInfo", "classify", "statement_kind"]

# Statements longer than this are not cached (huge insertmanyvalues batches
# would otherwise pin a lot of memory in the cache).
_CACHE_MAX_SQL = 32_768
_CACHE_SIZE = 4096


@dataclasses.dataclass(frozen=True)
class StatementInfo:
    """What :func:`classify` found out about one SQL text.

    :param kind: ``"select"``, ``"insert"``, ``"update"``, ``"delete"``,
        ``"ddl"``, ``"transaction"`` or ``"other"``; for several statements
        the most restrictive of their kinds.
    :param is_multi_statement: a ``;`` outside quotes and comments is
        followed by another statement.
    :param tables_read: tables after FROM / JOIN / USING (subqueries and CTE
        bodies included, CTE names excluded), lower-cased, ``schema.table``
        when qualified.
    :param tables_written: targets of INSERT / UPDATE / DELETE / MERGE /
        TRUNCATE / SELECT INTO, lower-cased.
    :param locks: ``FOR UPDATE`` / ``FOR SHARE`` / ``LOCK IN SHARE MODE``.
    :param functions: names of the functions called, lower-cased.
    :param ambiguity: why another SQL dialect would read the text
        differently, or ``None``.
    :param table_doubt: why the table lists may be incomplete (no SQL
        dialect parses the statement, it nests too deep, it is too long to
        parse), or ``None``.  Only set for SELECT/INSERT/UPDATE/DELETE.
    """

    kind: str
    is_multi_statement: bool
    tables_read: frozenset[str]
    tables_written: frozenset[str]
    locks: bool
    functions: frozenset[str] = frozenset()
    ambiguity: str | None = None
    table_doubt: str | None = None


def statement_kind(tokens: tuple[Token, ...]) -> str:
    """The kind of one statement's tokens, from its first words."""
    i = 0
    while i < len(tokens) and tokens[i][0] == "(":
        i += 1
    if i >= len(tokens) or tokens[i][0] != "w":
        return "other"
    first = tokens[i][2]
    following = tokens[i + 1][2] if i + 1 < len(tokens) else None
    if first == "WITH":
        depth = 0
        for kind, _, upper in tokens[i + 1 :]:
            if kind == "(":
                depth += 1
            elif kind == ")":
                depth -= 1
            elif depth == 0 and upper in DML_KINDS:
                return DML_KINDS[upper]
        return "other"
    if first in DML_KINDS:
        return DML_KINDS[first]
    if first in DDL_WORDS:
        return "ddl"
    if first in ("COMMIT", "ROLLBACK") and following == "PREPARED":
        return "other"  # finishes some other session's two-phase transaction
    if first in TRANSACTION_WORDS or (first == "START" and following == "TRANSACTION"):
        return "transaction"
    return "other"


def _classify_uncached(
    sql: str, dialect: str | None = None, tables: bool = True
) -> StatementInfo:
    tokens, ambiguity = lex(sql, dialect)
    statements = split_statements(tokens)
    if not statements:
        return StatementInfo(
            "other", False, frozenset(), frozenset(), False, frozenset(), ambiguity
        )
    kinds: list[str] = []
    reads: set[str] = set()
    writes: set[str] = set()
    functions: set[str] = set()
    locks = False
    for statement in statements:
        scanner = Scanner(statement)
        scanner.run()
        kind = statement_kind(statement)
        if kind == "select":
            if scanner.select_into:
                kind = "other"
            elif scanner.nested_kinds:
                kind = scanner.nested_kinds[0]
        kinds.append(kind)
        reads |= scanner.tables_read()
        writes |= scanner.tables_written()
        functions |= scanner.functions
        locks = locks or scanner.locks
    kind = next(k for k in KIND_SEVERITY if k in kinds)
    doubt = None
    if tables and kind in ("select", "insert", "update", "delete"):
        # The second opinion: sqlglot's syntax tree (see server.sql.tables).
        second = parser_tables(tokens)
        reads |= second.read
        writes |= second.written
        doubt = second.doubt
    return StatementInfo(
        kind=kind,
        is_multi_statement=len(statements) > 1,
        tables_read=frozenset(reads),
        tables_written=frozenset(writes),
        locks=locks,
        functions=frozenset(functions),
        ambiguity=ambiguity,
        table_doubt=doubt,
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _classify_cached(sql: str, dialect: str | None, tables: bool) -> StatementInfo:
    return _classify_uncached(sql, dialect, tables)


def classify(sql: str, dialect: str | None = None, tables: bool = True) -> StatementInfo:
    """Kind, tables, functions, locking and dialect ambiguity of ``sql``.

    Table detection errs on the side of reporting too much: a word that may
    be a table in some dialect is reported as one.  ``dialect`` reads the
    text as that backend does (see :func:`session_proxy_server.sql.lexer.lex`).  ``tables``
    False skips the second table extractor (sqlglot, the costly part): the
    table lists are then the hand scanner's alone and
    :attr:`StatementInfo.table_doubt` is None, for callers that judge no
    table rule.
    """
    if len(sql) > _CACHE_MAX_SQL:
        return _classify_uncached(sql, dialect, tables)
    return _classify_cached(sql, dialect, tables)

