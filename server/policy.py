"""SQL firewall: per-role allowlists of statement fingerprints and table rules.

The server sees statements as SQL text compiled by SQLAlchemy for one of
three drivers: sqlite3 (``?``, ``?1``, ``:1``, ``:name``), psycopg 3 and
pymysql (``%s``, ``%(name)s``).  This module decides whether a role may run
a statement without talking to the database.

Design
------

*Tokenizer.*  :func:`_lex` is a hand-written, single-pass tokenizer (a few
regular expressions for words, numbers and operators; hand-written scanning
for strings, quoted identifiers, dollar quotes and comments).  It never
builds a parse tree; everything downstream works on its flat token list.

*Fingerprint.*  :func:`fingerprint` turns the tokens back into text with
comments removed, every literal and bound placeholder (with its bind cast
such as ``::INTEGER``, which psycopg statements carry) replaced by ``?``,
keywords upper-cased, identifiers kept as written (quoted identifiers lose
their quotes unless they need them) and single spaces between tokens.  A
parenthesized list whose items are all placeholders (or all collapsed
lists) becomes ``(?+)`` and a ``VALUES`` list of identical tuples becomes a
single tuple, so expanding ``IN`` and "insertmanyvalues" batches of any size
share one fingerprint.  Fingerprints
are idempotent: ``fingerprint(fingerprint(s)) == fingerprint(s)``, which lets
a policy file list either fingerprints or plain SQL.

*Classification.*  :func:`classify` walks the same tokens once with a small
state machine that knows where table names can stand (after ``FROM``,
``JOIN``, commas of a ``FROM`` list, ``INTO``, ``UPDATE``, ``DELETE``,
``USING``), which CTE names shadow tables (with their scope), which words
are function calls, and whether the statement takes row locks.  When unsure
it over-reports tables (refusing a statement is safe, missing a table read
is not).

*Dialect ambiguity.*  The three databases lex some constructs differently:
MySQL honours backslash escapes in ``'...'`` and ``"..."`` and treats ``#``
as a comment and ``/*! ... */`` as code; PostgreSQL nests block comments and
knows dollar quotes; SQLite reads ``[...]`` as an identifier and ``$name``
as a parameter; the pyformat drivers substitute ``%s`` even inside string
literals.  Such text can look harmless to one reading and do something else
under another, so :func:`classify` reports it in
:attr:`StatementInfo.ambiguity` and :meth:`Policy.check_statement` refuses
it for every role without ``allow_all``.  SQLAlchemy never generates these
constructs for DML with bound parameters.

*Policy.*  :class:`Policy` maps role names to :class:`RolePolicy` and is
loaded from JSON (see :meth:`Policy.load` for the schema).  Violations raise
:class:`PolicyViolation`.  :class:`PolicyRecorder` collects the fingerprints
(and logical operations) a workload uses per role and writes a strict policy
file that allows exactly those.

Results of :func:`fingerprint` and :func:`classify` are cached with
:func:`functools.lru_cache` because the same SQL text repeats constantly.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from .sql_tables import parser_tables, rule_access

__all__ = [
    "ACCESS_LEVELS",
    "POLICY_VERSION",
    "SAFE_FUNCTIONS",
    "STARTUP_STATEMENTS",
    "Policy",
    "PolicyRecorder",
    "PolicyViolation",
    "RolePolicy",
    "StatementInfo",
    "classify",
    "fingerprint",
]

POLICY_VERSION = 1
ACCESS_LEVELS = ("none", "read", "write")

# Statements longer than this are not cached (huge insertmanyvalues batches
# would otherwise pin a lot of memory in the caches).
_CACHE_MAX_SQL = 32_768
_CACHE_SIZE = 4096

# ---------------------------------------------------------------------------
# Keywords
# ---------------------------------------------------------------------------

# Upper-cased in fingerprints and followed by a space before "(".
_STRUCTURAL_KEYWORDS = frozenset(
    """
    ABORT ADD ALL ALTER ANALYZE AND ANY AS ASC ATTACH BEGIN BETWEEN BOTH BY
    CASCADE CASE CHECK COLLATE COLUMN COMMENT COMMIT CONFLICT CONSTRAINT CREATE
    CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CYCLE DATABASE DEFAULT
    DEFERRABLE DELETE DESC DETACH DISTINCT DO DROP DUPLICATE ELSE END ESCAPE
    EXCEPT EXCLUSIVE EXISTS EXPLAIN FALSE FETCH FILTER FIRST FOLLOWING FOR
    FOREIGN FROM FULL GRANT GROUP GROUPS HAVING IGNORE ILIKE IMMEDIATE IN INDEX
    INNER INSERT INTERSECT INTERVAL INTO IS ISNULL ISOLATION JOIN KEY LAST
    LATERAL LEADING LEFT LEVEL LIKE LIMIT LOCK LOCKED MATERIALIZED MERGE MODE
    NATURAL NEXT NO NOT NOTHING NOTNULL NOWAIT NULL NULLS OF OFFSET ON ONLY OR
    ORDER OUTER OVER PARTITION PRAGMA PRECEDING PRIMARY RANGE RECURSIVE
    REFERENCES REGEXP RELEASE RENAME REPLACE RESTRICT RETURNING REVOKE RIGHT
    ROLLBACK ROWS SAVEPOINT SEARCH SELECT SET SHARE SHOW SIMILAR SKIP SOME START
    STRAIGHT_JOIN TABLE TEMP TEMPORARY THEN TIES TO TRAILING TRANSACTION TRUE
    TRUNCATE UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW WHEN WHERE
    WINDOW WITH WITHIN WITHOUT ZONE
    """.split()
)

# Upper-cased in fingerprints, no space before "(": function-like keywords
# and type names.
_FUNCTION_KEYWORDS = frozenset(
    """
    ABS ARRAY AVG BIGINT BLOB BOOLEAN BYTEA CAST CHAR COALESCE CONCAT COUNT DATE
    DATETIME DECIMAL DOUBLE EXTRACT FLOAT GREATEST IFNULL INT INTEGER JSON JSONB
    LEAST LENGTH LOWER MAX MIN NULLIF NUMERIC OVERLAY POSITION REAL ROUND ROW
    SMALLINT SUBSTR SUBSTRING SUM TEXT TIME TIMESTAMP TRIM UPPER UUID VARCHAR
    """.split()
)

_KEYWORDS = _STRUCTURAL_KEYWORDS | _FUNCTION_KEYWORDS

# Words that are syntax, not a function call, when "(" follows them.
_NOT_A_CALL = frozenset(
    """
    ALL AND ANY ARRAY AS BETWEEN BY CASE CHECK CONFLICT CYCLE DEFAULT DISTINCT
    DO ELSE END ESCAPE EXCEPT EXISTS FILTER FROM GROUP GROUPS HAVING IN INDEX
    INTERSECT INTO IS JOIN KEY LATERAL LIKE ILIKE LIMIT MATERIALIZED NOT OF
    OFFSET ON ONLY OR OVER PARTITION PRIMARY RANGE RECURSIVE REFERENCES
    RETURNING ROWS SELECT SET SOME TABLE THEN TO UNION UNIQUE USING VALUES WHEN
    WHERE WINDOW WITH WITHIN
    """.split()
)

# Words after which a following word is not an alias of the preceding table.
_ALIAS_STOP = _KEYWORDS | frozenset("FORCE INDEXED PROCEDURE TABLESAMPLE USE".split())

# End a FROM / UPDATE table list at the same parenthesis depth.
_CLAUSE_END = frozenset(
    """
    WHERE GROUP HAVING ORDER LIMIT OFFSET FETCH UNION INTERSECT EXCEPT WINDOW
    RETURNING SET FOR SELECT VALUES INTO PROCEDURE
    """.split()
)

# SQL value functions called without parentheses; in FROM (``FROM
# current_user AS s``) they are a function's range variable, not a table.
_VALUE_FUNCTIONS = frozenset(
    """
    current_catalog current_date current_role current_schema current_time
    current_timestamp current_user localtime localtimestamp session_user
    system_user user
    """.split()
)

# A "(" followed by one of these (after more "(") opens a subquery.
_SUBQUERY_START = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})

# Words that may stand between FROM/JOIN/UPDATE/DELETE FROM and the table.
_TABLE_MODIFIERS = frozenset(
    {"ONLY", "LATERAL", "LOW_PRIORITY", "HIGH_PRIORITY", "DELAYED", "IGNORE", "QUICK"}
)
_INSERT_MODIFIERS = frozenset({"LOW_PRIORITY", "HIGH_PRIORITY", "DELAYED", "IGNORE"})

_DML_KINDS = {
    "SELECT": "select",
    "VALUES": "select",
    "TABLE": "select",
    "INSERT": "insert",
    "REPLACE": "insert",
    "UPDATE": "update",
    "DELETE": "delete",
}
_DDL_WORDS = frozenset(
    """
    ALTER ANALYZE ATTACH CLUSTER COMMENT CREATE DETACH DROP GRANT IMPORT
    OPTIMIZE REFRESH REINDEX RENAME REPAIR REVOKE SECURITY TRUNCATE VACUUM
    """.split()
)
_TRANSACTION_WORDS = frozenset(
    {"ABORT", "BEGIN", "COMMIT", "END", "RELEASE", "ROLLBACK", "SAVEPOINT"}
)
# Most restrictive first: the kind of a multi-statement request.
_KIND_SEVERITY = ("ddl", "other", "delete", "update", "insert", "select", "transaction")

#: The read-only statements SQLAlchemy's dialects run when an engine first
#: connects (server version, default schema, isolation level, SQL mode).
#: Every role the policy names may run them, so a hand-written policy of
#: table rules works without listing them.
STARTUP_STATEMENTS = (
    "PRAGMA read_uncommitted",
    "SELECT pg_catalog.version()",
    "SELECT current_schema()",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SHOW standard_conforming_strings",
    "SELECT VERSION()",
    "SELECT DATABASE()",
    "SELECT @@sql_mode",
    "SELECT @@tx_isolation",
    "SELECT @@transaction_isolation",
    "SELECT @@lower_case_table_names",
)

#: Functions a role may call when a statement is allowed by table rules
#: (allowlisted fingerprints may call anything they contain).  Extend per
#: role with the ``functions`` key of the policy file.
SAFE_FUNCTIONS = frozenset(
    """
    abs any_value array_agg array_length avg bool_and bool_or cardinality cast
    ceil ceiling char char_length character_length coalesce concat concat_ws
    convert count cume_dist current_date current_time current_timestamp date
    date_add date_part date_sub date_trunc datetime dense_rank every exp
    extract first_value floor format from_unixtime gen_random_uuid
    generate_series greatest group_concat hex if ifnull iif instr
    json_array json_array_length json_build_array json_build_object
    json_contains json_each json_extract json_object json_quote json_tree
    json_type json_unquote json_valid jsonb_array_elements jsonb_build_array
    jsonb_build_object jsonb_each jsonb_extract_path jsonb_extract_path_text
    jsonb_typeof julianday lag last_value lead least left length ln localtime
    localtimestamp log lower lpad ltrim max md5 min mod now nth_value ntile
    nullif octet_length overlay percent_rank position power printf random rank
    regexp_replace repeat replace reverse right round row row_number rpad rtrim
    sign sqrt strftime string_agg substr substring sum timestamp
    timestampdiff timezone to_char to_date to_number to_timestamp total trim
    trunc typeof unixepoch unnest upper utc_timestamp uuid nextval
    """.split()
)

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

# Token kinds: "w" word, "q" quoted identifier, "l" literal, "p" placeholder,
# "o" operator, and the punctuation "(", ")", ",", ";", ".".
# A token is (kind, text, upper); upper is the upper-cased text of a word
# and None otherwise, so quoted identifiers never match a keyword.
_Token = tuple[str, str, "str | None"]

_WHITESPACE = " \t\n\r\f\v"
_WS_RE = re.compile(r"[ \t\n\r\f\v]+")
_WORD_RE = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_IDENT_CHAR_RE = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]")
_NUMBER_RE = re.compile(r"0[xX][0-9A-Fa-f]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DIGITS_WORD_RE = re.compile(r"\d[A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR_TAG_RE = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_DOLLAR_PARAM_RE = re.compile(r"\$(?:\d+|[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)")
_QMARK_RE = re.compile(r"\?\d*")
_COLON_PARAM_RE = re.compile(r":[A-Za-z0-9_\x80-\U0010ffff]+")
_PYFORMAT_RE = re.compile(r"%\([^)]*\)s")
_POSTCOMPILE_RE = re.compile(r"__\[POSTCOMPILE_[^\]]*\]")
_OP_RE = re.compile(
    r"->>|#>>|<=>|!~\*|->|#>|#-|<=|>=|<>|!=|==|\|\||@>|<@|&&|<<|>>|~\*|!~|@@|.", re.S
)
_BACKSLASH_STOP = {"'": re.compile(r"[\\']"), '"': re.compile(r'[\\"]')}
_DRIVER_FORMAT_RE = re.compile(r"%(?:%|\(|s)|__\[POSTCOMPILE_")
_BARE_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _quote_end(sql: str, start: int, quote: str, limit: int | None = None) -> int:
    """End (exclusive) of a quoted token read the standard way ('' escapes), or -1.

    With ``limit``, -1 also when the token would end after ``limit`` (the scan
    stops there, so checking a second reading never costs more than the first).
    """
    pos = start + 1
    stop = len(sql) if limit is None else limit
    while True:
        end = sql.find(quote, pos, stop)
        if end < 0:
            return -1
        if sql.startswith(quote, end + 1):
            pos = end + 2
            continue
        return end + 1


def _backslash_quote_end(sql: str, start: int, quote: str, limit: int | None = None) -> int:
    """End (exclusive) of a quoted token read with backslash escapes, or -1.

    ``limit`` as for :func:`_quote_end`.
    """
    stop = _BACKSLASH_STOP[quote]
    pos = start + 1
    endpos = len(sql) if limit is None else limit
    while True:
        match = stop.search(sql, pos, endpos)
        if match is None:
            return -1
        end = match.start()
        if sql[end] == "\\":
            pos = end + 2
        elif sql.startswith(quote, end + 1):
            pos = end + 2
        else:
            return end + 1


#: Deepest parenthesis nesting a statement may have.  SQLAlchemy's own
#: statements stay far below it; the limit keeps the fingerprint's cost linear.
MAX_NESTING = 200

#: The dialects :func:`_lex` can read exactly (``None``: every reading at once).
DIALECTS = ("postgresql", "mysql", "sqlite")

# MySQL: "--" starts a comment only before these.
_MYSQL_COMMENT_FOLLOW = " \t\n\r"
# Letters that, right before a quote, make one literal with it (E'..', X'..').
_STRING_PREFIXES = {
    None: "eEnNxXbB", "postgresql": "eEnNxXbB", "mysql": "nNxXbB", "sqlite": "xX"
}
_PG_COMMENT_RE = re.compile(r"/\*|\*/")
_SAFE_PERCENT_RE = re.compile(r"%%|%s|%\(\w+\)s")


_UNICODE_ESCAPE_RE = re.compile(r"\\(?:\\|\+([0-9a-fA-F]{6})|([0-9a-fA-F]{4}))")


def _unicode_unescape(body: str) -> str:
    """The text of a PostgreSQL ``U&"..."`` body (default escape character ``\\``).

    ``\\XXXX`` and ``\\+XXXXXX`` are code points, ``\\\\`` is a backslash;
    anything else is left as written (PostgreSQL refuses it).  ``UESCAPE``
    (another escape character) is refused by the session guard.
    """
    if "\\" not in body:
        return body

    def one(match: re.Match[str]) -> str:
        code = match.group(1) or match.group(2)
        if code is None:
            return "\\"
        try:
            return chr(int(code, 16))
        except (ValueError, OverflowError):
            return match.group()

    return _UNICODE_ESCAPE_RE.sub(one, body)


class NestingTooDeep(ValueError):
    """A statement nests parentheses deeper than :data:`MAX_NESTING`."""


class _Lexer:
    """One tokenization; see :func:`_lex`.

    ``dialect`` None reads the text every supported way at once and notes
    (in :attr:`ambiguity`) any construct one of them reads differently.
    With a dialect it reads the text the way that backend does, and notes
    what that backend might still read differently from this lexer (a
    session setting can change it, or the lexer does not model it).
    ``pyformat`` (pyformat drivers only) says whether the driver will run
    ``%`` substitution on the text: True when parameters are passed.
    """

    __slots__ = (
        "sql", "dialect", "pyformat", "tokens", "ambiguity", "zones", "depth",
        "_newline", "_bracket",
    )

    def __init__(self, sql: str, dialect: str | None = None, pyformat: bool | None = None) -> None:
        self.sql = sql
        self.dialect = dialect
        self.pyformat = pyformat
        self.tokens: list[_Token] = []
        self.ambiguity: str | None = None
        # Spans another dialect reads as one token ending earlier: "#" to end
        # of line (MySQL comment) and "[" to "]" (SQLite identifier), as
        # zone end -> earliest start of the zones still open.
        self.zones: dict[int, int] = {}
        self.depth = 0
        # Cached positions of the next "\n" and "]" (keeps repeated "#" and
        # "[" linear).
        self._newline = -1
        self._bracket = -1

    def note(self, problem: str) -> None:
        if self.ambiguity is None:
            self.ambiguity = problem

    def _next(self, char: str, start: int, cache: int) -> int:
        if cache >= start or cache == len(self.sql):
            return cache
        found = self.sql.find(char, start)
        return len(self.sql) if found < 0 else found

    def long_token(self, start: int, end: int, body: str) -> None:
        """Checks on a string, quoted identifier or comment spanning [start, end)."""
        if self.zones:
            for zone_end in [e for e in self.zones if e <= start]:
                del self.zones[zone_end]
            for zone_end, zone_start in self.zones.items():
                if zone_start < start < zone_end < end:
                    self.note(
                        "quoted text or comment crossing a '#' comment or '[...]' identifier"
                    )
        if "%" not in body and "__[" not in body:
            return
        if self.pyformat is None:
            if any(m.group() != "%%" for m in _DRIVER_FORMAT_RE.finditer(body)):
                self.note("driver placeholder inside quoted text or a comment")
        elif self.pyformat and body.replace("%%", "").find("%") >= 0:
            self.note(
                "'%' inside quoted text or a comment: the driver substitutes parameters there"
            )

    def quoted(self, start: int, body_start: int, quote: str, backslash: bool, exact: bool) -> int:
        """Scan a '...' or "..." token; return its end.

        ``backslash``: this dialect reads backslash escapes.  Unless ``exact``
        (the backend always reads the token this way), a token the other
        reading would end elsewhere is noted.
        """
        sql = self.sql
        read, other = (
            (_backslash_quote_end, _quote_end) if backslash else (_quote_end, _backslash_quote_end)
        )
        end = read(sql, body_start, quote)
        if end < 0:
            self.note("unterminated quoted text")
            end = len(sql)
        elif not exact and sql.find("\\", body_start, end) >= 0:
            if other(sql, body_start, quote, end) != end:
                self.note("backslash escape in quoted text")
        self.long_token(start, end, sql[body_start + 1 : end - 1])
        return end

    def line_comment(self, i: int) -> int:
        """End of the "--" comment at ``i``."""
        sql, dialect = self.sql, self.dialect
        n = len(sql)
        newline = sql.find("\n", i)
        end = n if newline < 0 else newline
        carriage = sql.find("\r", i, end)
        if dialect == "postgresql":
            if carriage >= 0:  # PostgreSQL ends the comment there
                end = carriage
        elif dialect is None:
            if 0 <= carriage < end - 1:
                self.note("carriage return inside a '--' comment")
            if i + 2 < n and sql[i + 2] not in _WHITESPACE:
                self.note("'--' comment without a following space")
        elif dialect == "mysql" and i + 2 < n and sql[i + 2] not in _MYSQL_COMMENT_FOLLOW:
            self.note("'--' without a following space: MySQL reads two minus signs")
        self.long_token(i, end, sql[i:end])
        return end

    def block_comment(self, i: int) -> int:
        """End of the "/*" comment at ``i``."""
        sql, dialect = self.sql, self.dialect
        n = len(sql)
        if dialect in (None, "mysql") and sql.startswith(("/*!", "/*M!"), i):
            self.note("MySQL executable comment")
        if dialect == "postgresql":  # nested, exactly as PostgreSQL reads them
            level = 0
            end = -1
            for match in _PG_COMMENT_RE.finditer(sql, i):
                level += 1 if match.group() == "/*" else -1
                if level == 0:
                    end = match.end()
                    break
            if end < 0:
                self.note("unterminated comment")
                end = n
        else:
            close = sql.find("*/", i + 2)
            if close < 0:
                if dialect != "sqlite":  # SQLite ends it with the text
                    self.note("unterminated comment")
                end = n
            else:
                end = close + 2
            if dialect != "sqlite" and sql.find("/*", i + 2, end) >= 0:
                self.note("nested block comment")
        self.long_token(i, end, sql[i:end])
        return end

    def percent(self, i: int) -> int:
        """A "%" outside quotes and comments; returns the index after its token."""
        sql = self.sql
        out = self.tokens.append
        if self.pyformat is not None:
            match = _SAFE_PERCENT_RE.match(sql, i)
            if self.pyformat and match is None:
                self.note(
                    "'%' the driver would read as a format directive "
                    "(only %s, %(name)s and %% are placeholders or literal '%')"
                )
            elif not self.pyformat and match is not None:
                self.note(
                    f"{match.group()!r} in a statement sent without parameters: "
                    "the driver leaves it as it is"
                )
        nxt = sql[i + 1] if i + 1 < len(sql) else ""
        match = _PYFORMAT_RE.match(sql, i)
        if match is not None:
            out(("p", match.group(), None))
            return match.end()
        if nxt == "s":
            out(("p", "%s", None))
            return i + 2
        out(("o", "%", None))
        return i + 2 if nxt == "%" else i + 1

    def run(self) -> None:
        sql = self.sql
        dialect = self.dialect
        n = len(sql)
        out = self.tokens.append
        if "\x00" in sql:
            self.note("NUL character")
        i = 0
        while i < n:
            c = sql[i]
            if c in _WHITESPACE:
                i = _WS_RE.match(sql, i).end()
                continue
            nxt = sql[i + 1] if i + 1 < n else ""
            if c == "-" and nxt == "-":
                i = self.line_comment(i)
                continue
            if c == "/" and nxt == "*":
                i = self.block_comment(i)
                continue
            if c == "#" and dialect == "mysql":
                newline = sql.find("\n", i)
                end = n if newline < 0 else newline
                self.long_token(i, end, sql[i:end])
                i = end
                continue
            if c == "'":
                end = self.quoted(
                    i, i, "'", backslash=dialect == "mysql", exact=dialect == "sqlite"
                )
                out(("l", sql[i:end], None))
                i = end
                continue
            if nxt == "'" and c in _STRING_PREFIXES[dialect]:
                if dialect is None and c not in "xX":
                    self.note(f"{c}'...' is a name and a string on SQLite and MySQL")
                # E'...' reads escapes in PostgreSQL; MySQL reads them everywhere.
                escaped = c in "eE" and dialect != "mysql"
                end = self.quoted(
                    i, i + 1, "'", backslash=escaped or dialect == "mysql",
                    exact=escaped and dialect == "postgresql",
                )
                out(("l", sql[i:end], None))
                i = end
                continue
            if c in "uU" and nxt == "&" and i + 2 < n and sql[i + 2] in "'\"" and dialect in (
                None, "postgresql"
            ):
                quote = sql[i + 2]
                if dialect is None:
                    self.note("U&'...' is U & '...' on SQLite and MySQL")
                end = self.quoted(i, i + 2, quote, backslash=False, exact=False)
                body = sql[i + 3 : end - 1]
                if quote == '"':
                    # The name PostgreSQL reads: U&"conn\0065ction" is connection.
                    body = _unicode_unescape(body.replace('""', '"'))
                out(("l" if quote == "'" else "q", body, None))
                i = end
                continue
            if c == '"':
                end = self.quoted(
                    i, i, '"', backslash=dialect == "mysql",
                    exact=dialect in ("sqlite", "postgresql"),
                )
                out(("q", sql[i + 1 : end - 1].replace('""', '"'), None))
                i = end
                continue
            if c == "`":
                end = _quote_end(sql, i, "`")
                if end < 0:
                    self.note("unterminated quoted identifier")
                    end = n
                self.long_token(i, end, sql[i + 1 : end - 1])
                out(("q", sql[i + 1 : end - 1].replace("``", "`"), None))
                i = end
                continue
            if c == "[" and dialect == "sqlite":
                close = sql.find("]", i + 1)
                if close < 0:
                    self.note("unterminated quoted identifier")
                    close = n - 1
                self.long_token(i, close + 1, sql[i + 1 : close])
                out(("q", sql[i + 1 : close], None))
                i = close + 1
                continue
            if c == "$":
                if dialect in ("mysql", "sqlite"):
                    self.note(
                        "'$' outside quotes (a MySQL identifier, a SQLite parameter, "
                        "a PostgreSQL dollar quote)"
                    )
                match = _DOLLAR_TAG_RE.match(sql, i)
                if match is not None:
                    tag = match.group()
                    close = sql.find(tag, match.end())
                    if dialect != "postgresql" or close < 0:
                        self.note(
                            "dollar-quoted string" if close >= 0 else "unterminated quoted text"
                        )
                    end = n if close < 0 else close + len(tag)
                    self.long_token(i, end, sql[match.end() : max(match.end(), end - len(tag))])
                    out(("l", sql[i:end], None))
                    i = end
                    continue
                match = _DOLLAR_PARAM_RE.match(sql, i)
                if match is not None:
                    out(("p", match.group(), None))
                    i = match.end()
                    continue
            if c == "?":
                end = _QMARK_RE.match(sql, i).end()
                out(("p", sql[i:end], None))
                i = end
                continue
            if c == "%":
                i = self.percent(i)
                continue
            if c == ":":
                if nxt == ":" or nxt == "=":
                    out(("o", c + nxt, None))
                    i += 2
                    continue
                match = _COLON_PARAM_RE.match(sql, i)
                if match is not None:
                    out(("p", match.group(), None))
                    i = match.end()
                    continue
                out(("o", ":", None))
                i += 1
                continue
            if c == "_" and sql.startswith("__[POSTCOMPILE_", i):
                match = _POSTCOMPILE_RE.match(sql, i)
                if match is not None:
                    out(("p", match.group(), None))
                    i = match.end()
                    continue
            match = _WORD_RE.match(sql, i)
            if match is not None:
                word = match.group()
                if dialect is not None and not word.isascii():
                    self.note("non-ASCII character outside quotes")
                out(("w", word, word.upper()))
                i = match.end()
                continue
            if c.isdigit() or (c == "." and nxt.isdigit()):
                if c.isdigit() and self.tokens and self.tokens[-1][0] == ".":
                    # MySQL identifiers may start with a digit: db.1table
                    match = _DIGITS_WORD_RE.match(sql, i)
                    word = match.group()
                    out(("w", word, word.upper()))
                    i = match.end()
                    continue
                match = _NUMBER_RE.match(sql, i)
                end = match.end()
                if end < n and _IDENT_CHAR_RE.match(sql, end) and c.isdigit():
                    # 1abc is an identifier in MySQL.
                    match = _DIGITS_WORD_RE.match(sql, i)
                    word = match.group()
                    out(("w", word, word.upper()))
                    i = match.end()
                    continue
                out(("l", match.group(), None))
                i = end
                continue
            if c == "(":
                self.depth += 1
                if self.depth > MAX_NESTING:
                    raise NestingTooDeep(
                        f"parentheses nest deeper than {MAX_NESTING} levels "
                        f"(at character {i})"
                    )
            elif c == ")" and self.depth > 0:
                self.depth -= 1
            if c in "(),;.":
                out((c, c, None))
                i += 1
                continue
            if dialect is None:
                if c == "#":
                    self._newline = self._next("\n", i, self._newline)
                    self.zones.setdefault(self._newline, i)
                elif c == "[":
                    self._bracket = self._next("]", i + 1, self._bracket)
                    self.zones.setdefault(self._bracket, i)
            elif (c == "#" or c == "@") and dialect == "sqlite":
                self.note(f"{c!r} outside quotes (a SQLite parameter)")
            end = _OP_RE.match(sql, i).end()
            out(("o", sql[i:end], None))
            i = end


def _lex(
    sql: str, dialect: str | None = None, pyformat: bool | None = None
) -> tuple[tuple[_Token, ...], str | None]:
    """Tokens of ``sql`` (comments dropped) and the first ambiguity found.

    ``dialect`` None notes every construct some supported backend reads
    differently; a dialect name reads the text as that backend does (see
    :class:`_Lexer`).  Raises :class:`NestingTooDeep` past :data:`MAX_NESTING`.
    Linear in ``len(sql)``.
    """
    lexer = _Lexer(sql, dialect, pyformat)
    lexer.run()
    return tuple(lexer.tokens), lexer.ambiguity


# ---------------------------------------------------------------------------
# Fingerprint
# ---------------------------------------------------------------------------

# Elements of a fingerprint: (class, text).  Classes: "k" structural keyword,
# "f" identifier / function-like word, "v" the placeholder "?", "g" a
# parenthesized group, "G" a collapsed group "(item+)", "o" operator, "::",
# "[", "]", and the punctuation ",", ";", ".", ")".
_Element = tuple[str, str]
_PLACEHOLDER: _Element = ("v", "?")
_PLUS: _Element = ("o", "+")
_COMMA: _Element = (",", ",")
# Words that continue a type name after a bind cast: "?::DOUBLE PRECISION".
_TYPE_TAIL_WORDS = frozenset({"WITH", "WITHOUT", "TIME", "ZONE", "PRECISION", "VARYING"})


def _render(elements: list[_Element]) -> str:
    parts: list[str] = []
    prev = ""
    for cls, text in elements:
        if parts:
            tight = (
                cls in (",", ";", ".", "::", "]", ")")
                or prev in (".", "::", "[")
                or (cls in ("g", "G", "[") and prev in ("f", "g", "G", "]"))
            )
            if not tight:
                parts.append(" ")
        parts.append(text)
        prev = cls
    return "".join(parts)


def _render_quoted(name: str) -> str:
    if _BARE_IDENT_RE.fullmatch(name) and name.upper() not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _collapsible(item: list[_Element]) -> bool:
    """A list item that is a single placeholder or an already collapsed list."""
    return len(item) == 1 and item[0][0] in ("v", "G")


def _collapse_values(elements: list[_Element]) -> list[_Element]:
    """``VALUES (a), (a), (a)`` -> ``VALUES (a)`` for identical tuples."""
    out: list[_Element] = []
    i = 0
    count = len(elements)
    while i < count:
        element = elements[i]
        out.append(element)
        i += 1
        if element == ("k", "VALUES") and i < count and elements[i][0] in ("g", "G"):
            group = elements[i]
            out.append(group)
            i += 1
            while i + 1 < count and elements[i] == _COMMA and elements[i + 1] == group:
                i += 2
    return out


def _close_group(inner: list[_Element]) -> _Element:
    inner = _collapse_values(inner)
    if not inner:
        return ("g", "()")
    if inner[-1] == _PLUS and _collapsible(inner[:-1]):
        return ("G", "(" + _render(inner[:-1]) + "+)")
    items: list[list[_Element]] = [[]]
    for element in inner:
        if element == _COMMA:
            items.append([])
        else:
            items[-1].append(element)
    first = items[0]
    if all(item == first for item in items) and _collapsible(first):
        return ("G", "(" + _render(first) + "+)")
    return ("g", "(" + _render(inner) + ")")


def _word_element(kind: str, text: str, upper: str | None) -> _Element:
    if kind == "q":
        return ("f", _render_quoted(text))
    if upper in _STRUCTURAL_KEYWORDS:
        return ("k", upper)
    if upper in _FUNCTION_KEYWORDS:
        return ("f", upper)
    return ("f", text)


def _fingerprint_uncached(sql: str, dialect: str | None = None) -> str:
    tokens, _ = _lex(sql, dialect)
    # One element list per open parenthesis, and per list the state of a
    # bind cast being dropped: "?::TIMESTAMP WITH TIME ZONE" -> "?".
    stack: list[list[_Element]] = [[]]
    casts: list[str | None] = [None]

    def push(element: _Element) -> None:
        state = casts[-1]
        if state == "type":
            if element[0] in ("f", "k"):
                casts[-1] = "after"
                return
            casts[-1] = None
        elif state == "after":
            if element[0] == ".":
                casts[-1] = "type"
                return
            if element[0] in ("g", "G", "[", "]") or (
                element[0] in ("f", "k") and element[1].upper() in _TYPE_TAIL_WORDS
            ):
                return
            casts[-1] = None
        elements = stack[-1]
        if element[0] == "::" and elements and elements[-1] == _PLACEHOLDER:
            casts[-1] = "type"
            return
        elements.append(element)

    for kind, text, upper in tokens:
        if kind == "(":
            stack.append([])
            casts.append(None)
        elif kind == ")":
            if len(stack) > 1:
                inner = stack.pop()
                casts.pop()
                push(_close_group(inner))
            else:
                push((")", ")"))
        elif kind in ("l", "p"):
            push(_PLACEHOLDER)
        elif kind in ("w", "q"):
            push(_word_element(kind, text, upper))
        elif kind == "o":
            push((text, text) if text in ("::", "[", "]") else ("o", text))
        else:
            push((kind, text))
    while len(stack) > 1:  # unbalanced "(": keep it visible
        inner = stack.pop()
        casts.pop()
        stack[-1].append(("g", "(" + _render(_collapse_values(inner))))
    elements: list[_Element] = []
    for element in stack[0]:
        if element[0] == ";" and (not elements or elements[-1][0] == ";"):
            continue
        elements.append(element)
    while elements and elements[-1][0] == ";":
        elements.pop()
    return _render(_collapse_values(elements))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _fingerprint_cached(sql: str, dialect: str | None) -> str:
    return _fingerprint_uncached(sql, dialect)


def fingerprint(sql: str, dialect: str | None = None) -> str:
    """The normalized fingerprint of ``sql``.

    Comments are removed; literals and bound placeholders of every
    paramstyle, with any ``::type`` cast, become ``?``; lists of
    placeholders become ``(?+)``; a
    ``VALUES`` list of identical tuples becomes one tuple; keywords are
    upper-cased, identifiers keep their case, quoted identifiers lose their
    quotes unless they need them; tokens are separated by single spaces.
    Trailing semicolons are dropped.  Idempotent.  ``dialect`` reads the
    text as that backend does (see :func:`_lex`).
    """
    if len(sql) > _CACHE_MAX_SQL:
        return _fingerprint_uncached(sql, dialect)
    return _fingerprint_cached(sql, dialect)


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


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


class _Frame:
    """Parser state of one parenthesis level."""

    __slots__ = ("access", "call", "delete_from")

    def __init__(self, call: bool = False, access: str | None = None) -> None:
        self.access = access  # "read" / "write" while inside a table list
        self.call = call  # opened by a function call: FROM is an expression
        self.delete_from = False  # DELETE seen, FROM names the written table


def _split_statements(tokens: tuple[_Token, ...]) -> list[tuple[_Token, ...]]:
    statements: list[tuple[_Token, ...]] = []
    start = 0
    for index, token in enumerate(tokens):
        if token[0] == ";":
            if index > start:
                statements.append(tokens[start:index])
            start = index + 1
    if start < len(tokens):
        statements.append(tokens[start:])
    return statements


def _statement_kind(tokens: tuple[_Token, ...]) -> str:
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
            elif depth == 0 and upper in _DML_KINDS:
                return _DML_KINDS[upper]
        return "other"
    if first in _DML_KINDS:
        return _DML_KINDS[first]
    if first in _DDL_WORDS:
        return "ddl"
    if first in ("COMMIT", "ROLLBACK") and following == "PREPARED":
        return "other"  # finishes some other session's two-phase transaction
    if first in _TRANSACTION_WORDS or (first == "START" and following == "TRANSACTION"):
        return "transaction"
    return "other"


class _Scanner:
    """Tables, functions and locks of one statement (see :func:`classify`)."""

    def __init__(self, tokens: tuple[_Token, ...]) -> None:
        self.tokens = tokens
        self.reads: list[tuple[str, int]] = []
        self.writes: list[str] = []
        self.functions: set[str] = set()
        self.aliases: dict[str, set[str]] = {}
        self.ctes: list[tuple[str, int, int]] = []  # name, scope start, scope end
        self.not_calls: set[int] = set()
        self.call_parens: set[int] = set()
        self.nested_kinds: list[str] = []
        self.locks = False
        self.select_into = False
        # PostgreSQL attribute notation: ``x.f`` and ``(expr).f`` call f(x) when
        # no column f exists, so ``s.ts_stat`` over ``FROM lower('...') AS s``
        # runs ts_stat('...').  Qualified references (first parts, last part)
        # are kept and judged once every range variable is known.
        self.qualified_refs: list[tuple[str, str]] = []
        self.range_functions = False
        self.close, self.enclosing = self._match_parens()
        self.frames = [_Frame()]

    def _match_parens(self) -> tuple[dict[int, int], list[int]]:
        tokens = self.tokens
        n = len(tokens)
        close: dict[int, int] = {}
        enclosing = [n] * n
        opened: list[int] = []
        members: list[list[int]] = [[]]
        for index, token in enumerate(tokens):
            if token[0] == "(":
                members[-1].append(index)
                opened.append(index)
                members.append([])
            elif token[0] == ")" and opened:
                start = opened.pop()
                close[start] = index
                for member in members.pop():
                    enclosing[member] = index
                members[-1].append(index)
            else:
                members[-1].append(index)
        for start in opened:
            close[start] = n
        return close, enclosing

    def tok(self, index: int) -> _Token:
        if 0 <= index < len(self.tokens):
            return self.tokens[index]
        return ("", "", None)

    def name_like(self, index: int) -> bool:
        kind, _, upper = self.tok(index)
        return kind == "q" or (kind == "w" and upper not in _ALIAS_STOP)

    def qualified(self, index: int) -> tuple[str, int]:
        """The dotted name starting at ``index`` (lower-cased) and the index after it."""
        parts = [self.tokens[index][1]]
        index += 1
        while self.tok(index)[0] == "." and self.tok(index + 1)[0] in ("w", "q"):
            parts.append(self.tokens[index + 1][1])
            index += 2
        return ".".join(parts).lower(), index

    def is_statement_start(self, index: int) -> bool:
        kind, _, upper = self.tok(index - 1)
        return kind in ("", "(", ")") or upper in ("EXPLAIN", "ANALYZE", "VERBOSE")

    def is_query_start(self, index: int) -> bool:
        """Whether a query may begin at ``index`` (after "(", a set operator, or first)."""
        kind, _, upper = self.tok(index - 1)
        return kind in ("", "(") or upper in (
            "UNION", "INTERSECT", "EXCEPT", "ALL", "DISTINCT", "EXPLAIN", "ANALYZE", "VERBOSE"
        )

    def record(self, name: str, access: str, index: int) -> None:
        if access == "read":
            self.reads.append((name, index))
        else:
            self.writes.append(name)

    def parse_ctes(self, index: int) -> None:
        """Record the CTE names of the WITH at ``index`` with their scopes."""
        tokens = self.tokens
        scope_end = self.enclosing[index]
        i = index + 1
        recursive = self.tok(i)[2] == "RECURSIVE"
        if recursive:
            i += 1
        while self.tok(i)[0] in ("w", "q"):
            name_index = i
            i += 1
            if self.tok(i)[0] == "(":
                i = self.close[i] + 1
            if self.tok(i)[2] != "AS":
                return
            i += 1
            while self.tok(i)[2] in ("NOT", "MATERIALIZED"):
                i += 1
            if self.tok(i)[0] != "(":
                return
            body_end = self.close[i]
            self.not_calls.add(name_index)
            name = tokens[name_index][1].lower()
            self.ctes.append((name, name_index if recursive else body_end, scope_end))
            i = body_end + 1
            depth = 0
            while i < len(tokens):  # skip SEARCH / CYCLE clauses
                kind, _, upper = tokens[i]
                if kind == "(":
                    depth += 1
                elif kind == ")":
                    if depth == 0:
                        return
                    depth -= 1
                elif depth == 0 and (kind == "," or upper in _DML_KINDS):
                    break
                i += 1
            if self.tok(i)[0] != ",":
                return
            i += 1

    def take_table(self, i: int, expect: str) -> tuple[int, str | None, bool]:
        """Handle token ``i`` while a table name is expected.

        Returns the next index, the expectation that remains, and whether
        the token was consumed (False: process it normally).
        """
        kind, _, upper = self.tok(i)
        access = "read" if expect == "read" else "write"
        if kind == "w" and upper in _TABLE_MODIFIERS:
            following = self.tok(i + 1)
            if following[0] == "(" or following[2] in _TABLE_MODIFIERS | {"FROM", "INTO"}:
                return i + 1, expect, True
            if self.name_like(i + 1):
                if self.tok(self.qualified(i + 1)[1])[0] != "(":
                    # "FROM only x" is table "only" in some dialects: over-report.
                    self.record(self.tokens[i][1].lower(), access, i)
                return i + 1, expect, True
            # "UPDATE ignore SET ...": the word is the table.
        if kind == "(":
            j = i + 1
            while self.tok(j)[0] == "(":
                j += 1
            if self.tok(j)[2] in _SUBQUERY_START:
                return i, None, False
            # Parenthesized join: the table list continues inside.
            self.frames.append(_Frame(access=access))
            return i + 1, expect, True
        if kind == "q" or (kind == "w" and upper not in _SUBQUERY_START):
            name, j = self.qualified(i)
            if self.tok(j)[0] == "(" and expect == "read":
                self.functions.add(name)  # table function: json_each(?)
                self.call_parens.add(j)
                self.range_functions = True
                return j, None, True
            self.record(name, access, i)
            k = j + 1 if self.tok(j)[2] == "AS" else j
            if self.name_like(k):
                self.aliases.setdefault(self.tokens[k][1].lower(), set()).add(name)
            return j, None, True
        return i, None, False

    def delete_targets(self, i: int) -> int:
        """MySQL ``DELETE t1, t2 FROM ...``: record the targets, return FROM's index."""
        tokens = self.tokens
        while i < len(tokens):
            kind, _, upper = tokens[i]
            if upper == "FROM" or kind in ("(", ")"):
                break
            if kind in ("w", "q"):
                name, i = self.qualified(i)
                self.writes.append(name)
                continue
            i += 1
        return i

    def run(self) -> None:
        tokens = self.tokens
        n = len(tokens)
        expect: str | None = None
        i = 0
        while i < n:
            if expect is not None:
                i, expect, consumed = self.take_table(i, expect)
                if consumed:
                    continue
            kind, _, upper = tokens[i]
            frame = self.frames[-1]
            if kind == "(":
                self.frames.append(_Frame(call=i in self.call_parens))
            elif kind == ")":
                if len(self.frames) > 1:
                    self.frames.pop()
            elif kind == ",":
                if frame.access is not None:
                    expect = frame.access
            elif kind == "w" and upper == "FROM":
                before = self.tok(i - 1)[2]
                if frame.call or (before == "DISTINCT" and self.tok(i - 2)[2] in ("IS", "NOT")):
                    pass
                elif frame.delete_from:
                    frame.delete_from = False
                    frame.access = expect = "write"
                else:
                    frame.access = expect = "read"
            elif kind == "w" and (
                upper == "JOIN" or (upper == "STRAIGHT_JOIN" and self.tok(i - 1)[2] != "SELECT")
            ):
                expect = frame.access or "read"
            elif kind == "w" and upper == "USING":
                if self.tok(i + 1)[0] != "(":
                    frame.access = expect = "read"
            elif kind == "w" and upper == "INTO":
                frame.access = None
                expect = "target"
                if len(self.frames) == 1:
                    self.select_into = True
            elif kind == "w" and upper in _CLAUSE_END:
                frame.access = None
                if upper == "SELECT":
                    frame.call = False
                elif upper == "FOR" and self.tok(i + 1)[2] in ("UPDATE", "SHARE", "NO", "KEY"):
                    self.locks = True
            elif kind == "w" and upper == "TABLE" and self.is_query_start(i):
                expect = "read"  # TABLE x is SELECT * FROM x
            elif kind == "w" and upper == "LOCK":
                if self.tok(i + 1)[2] == "IN" and self.tok(i + 2)[2] == "SHARE":
                    self.locks = True
            elif kind == "w" and upper == "WITH":
                following = self.tok(i + 1)
                after = self.tok(i + 2)
                if following[2] == "RECURSIVE" or (
                    following[0] in ("w", "q") and (after[2] == "AS" or after[0] == "(")
                ):
                    self.parse_ctes(i)
            elif (
                kind == "w"
                and upper in ("INSERT", "REPLACE")
                and self.is_statement_start(i)
                and self.tok(i + 1)[0] != "("
            ):
                if len(self.frames) > 1:
                    self.nested_kinds.append("insert")
                i += 1
                while True:
                    word = self.tok(i)[2]
                    if word == "OR":
                        i += 2
                    elif word in _INSERT_MODIFIERS or word == "INTO":
                        i += 1
                    else:
                        break
                expect = "target"
                continue
            elif kind == "w" and upper == "UPDATE" and self.is_statement_start(i):
                if len(self.frames) > 1:
                    self.nested_kinds.append("update")
                i += 1
                if self.tok(i)[2] == "OR":
                    i += 2
                frame.access = "write"
                expect = "target"
                continue
            elif kind == "w" and upper == "DELETE" and self.is_statement_start(i):
                if len(self.frames) > 1:
                    self.nested_kinds.append("delete")
                i += 1
                j = i
                while self.tok(j)[2] in ("LOW_PRIORITY", "QUICK", "IGNORE"):
                    j += 1
                if self.tok(j)[2] == "FROM":
                    frame.delete_from = True
                    i = j
                else:
                    i = self.delete_targets(i)
                continue
            elif kind == "w" and upper in ("MERGE", "TRUNCATE") and self.is_statement_start(i):
                i += 1
                while self.tok(i)[2] in ("INTO", "TABLE", "ONLY"):
                    i += 1
                expect = "target"
                continue
            elif kind in ("w", "q"):
                name, j = self.qualified(i)
                if self.tok(j)[0] == "(" and self._is_call(i, upper):
                    self.functions.add(name)
                    self.call_parens.add(j)
                    if frame.access is not None:  # a call in a FROM list
                        self.range_functions = True
                elif j > i + 1:
                    prefix, _, last = name.rpartition(".")
                    self.qualified_refs.append((prefix, last))
                i = j
                continue
            elif kind == "." and self.tok(i - 1)[0] == ")" and self.tok(i + 1)[0] in ("w", "q"):
                # (expr).f: a field of a composite value, or the call f(expr).
                self.functions.add(self.tokens[i + 1][1].lower())
            i += 1
        self._attribute_calls()

    def _attribute_calls(self) -> None:
        """Record ``x.f`` as a possible call of ``f`` when ``x`` is no table's name.

        With a function in FROM (``FROM lower(?) AS s``), ``s`` is a value,
        not a row of a table, and ``s.f`` calls ``f(s)`` on PostgreSQL.  A
        prefix that names a table, a table's alias or a CTE is a column
        reference (a call on a whole table row is only possible for functions
        taking that row type).  Over-reports: a subquery's alias counts as
        unknown here.
        """
        reads = [read for read, _ in self.reads]
        if not self.range_functions and _VALUE_FUNCTIONS.isdisjoint(reads):
            return
        known = {
            alias for alias, names in self.aliases.items() if not names <= _VALUE_FUNCTIONS
        } | {cte for cte, _, _ in self.ctes}
        for name in [*reads, *self.writes]:
            if name not in _VALUE_FUNCTIONS:
                known.add(name)
                known.add(name.rpartition(".")[2])
        for prefix, last in self.qualified_refs:
            if prefix not in known and prefix.rpartition(".")[2] not in known:
                self.functions.add(last)

    def _is_call(self, index: int, upper: str | None) -> bool:
        if index in self.not_calls or upper in _NOT_A_CALL:
            return False
        before = self.tok(index - 1)
        return before[2] != "AS" and before[1] != "::"

    def tables_read(self) -> frozenset[str]:
        """Names read outside the scope of a CTE of the same name.

        Each name's CTE scopes are merged into sorted, disjoint intervals, so
        a read is looked up by bisection: ``O((reads + ctes) log ctes)``, not
        ``reads x ctes``.
        """
        scopes: dict[str, list[tuple[int, int]]] = {}
        for cte, start, end in self.ctes:
            scopes.setdefault(cte, []).append((start, end))
        starts: dict[str, list[int]] = {}
        ends: dict[str, list[int]] = {}
        for cte, intervals in scopes.items():
            merged: list[list[int]] = []
            for start, end in sorted(intervals):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            starts[cte] = [start for start, _ in merged]
            ends[cte] = [end for _, end in merged]

        def is_cte(name: str, index: int) -> bool:
            if name not in starts:
                return False
            at = bisect.bisect_right(starts[name], index) - 1
            return at >= 0 and index < ends[name][at]

        return frozenset(name for name, index in self.reads if not is_cte(name, index))

    def tables_written(self) -> frozenset[str]:
        written: set[str] = set()
        for name in self.writes:
            written |= self.aliases.get(name, {name})
        return frozenset(written)


def _classify_uncached(
    sql: str, dialect: str | None = None, tables: bool = True
) -> StatementInfo:
    tokens, ambiguity = _lex(sql, dialect)
    statements = _split_statements(tokens)
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
        scanner = _Scanner(statement)
        scanner.run()
        kind = _statement_kind(statement)
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
    kind = next(k for k in _KIND_SEVERITY if k in kinds)
    doubt = None
    if tables and kind in ("select", "insert", "update", "delete"):
        # The second opinion: sqlglot's syntax tree (see server.sql_tables).
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
    text as that backend does (see :func:`_lex`).  ``tables`` False skips
    the second table extractor (sqlglot, the costly part): the table lists
    are then the hand scanner's alone and :attr:`StatementInfo.table_doubt`
    is None, for callers that judge no table rule.
    """
    if len(sql) > _CACHE_MAX_SQL:
        return _classify_uncached(sql, dialect, tables)
    return _classify_cached(sql, dialect, tables)


# ---------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------


_STARTUP_FINGERPRINTS = frozenset(fingerprint(sql) for sql in STARTUP_STATEMENTS)
# Room for the case and spacing a dialect may send them with.
_STARTUP_MAX_CHARS = 2 * max(len(sql) for sql in STARTUP_STATEMENTS)


class PolicyViolation(Exception):
    """A role tried something its policy does not allow.

    :param message: human-readable; names the role and, for statements, the
        fingerprint.
    :param fingerprint: fingerprint of the refused statement ("" for
        operations).
    :param reason: one of ``unknown_role``, ``no_permission``, ``ambiguous``,
        ``multi_statement``, ``ddl``, ``not_allowlisted``, ``table_access``,
        ``function``, ``operation``.
    """

    #: The index of the refused step (set by server.security for statements).
    step: int | None = None

    def __init__(self, message: str, fingerprint: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.fingerprint = fingerprint
        self.reason = reason

    def __str__(self) -> str:
        return self.message


_ROLE_KEYS = (
    "allow_all",
    "allow_ddl",
    "allow_multi_statement",
    "functions",
    "metrics",
    "operations",
    "statements",
    "tables",
)
_TOP_KEYS = ("roles", "version")


@dataclasses.dataclass(frozen=True)
class RolePolicy:
    """What one role may do.  See :meth:`Policy.load` for the meaning of each field."""

    statements: frozenset[str] = frozenset()
    tables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    functions: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()
    allow_ddl: bool = False
    allow_multi_statement: bool = False
    allow_all: bool = False
    #: May read ``/v1/metrics`` (``allow_all`` may too).
    metrics: bool = False

    def table_access(self, table: str) -> str:
        """``"none"``, ``"read"`` or ``"write"`` for ``table`` ("*" is the default).

        ``table`` may be qualified (``public.task``, ``db.public.task``); see
        :func:`server.sql_tables.rule_access` for how it meets the rules.
        """
        return rule_access(self.tables, table)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: only the keys that differ from the defaults."""
        if self.allow_all:
            return {"allow_all": True}
        data: dict[str, Any] = {
            "statements": sorted(self.statements),
            "operations": sorted(self.operations),
        }
        if self.tables:
            data["tables"] = dict(sorted(self.tables.items()))
        if self.functions:
            data["functions"] = sorted(self.functions)
        if self.allow_ddl:
            data["allow_ddl"] = True
        if self.allow_multi_statement:
            data["allow_multi_statement"] = True
        if self.metrics:
            data["metrics"] = True
        return data


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}[{index}]: expected a non-empty string, got {item!r}")
    return value


def _parse_role(data: Any, where: str) -> RolePolicy:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_ROLE_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(_ROLE_KEYS)})"
        )
    flags: dict[str, bool] = {}
    for key in ("allow_all", "allow_ddl", "allow_multi_statement", "metrics"):
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"{where}.{key}: expected true or false, got {value!r}")
        flags[key] = value
    statements = frozenset(
        fingerprint(s) for s in _string_list(data.get("statements", []), f"{where}.statements")
    )
    operations = frozenset(_string_list(data.get("operations", []), f"{where}.operations"))
    functions = frozenset(
        f.lower() for f in _string_list(data.get("functions", []), f"{where}.functions")
    )
    raw_tables = data.get("tables", {})
    if not isinstance(raw_tables, dict):
        raise ValueError(f"{where}.tables: expected an object, got {type(raw_tables).__name__}")
    tables: dict[str, str] = {}
    for table, access in raw_tables.items():
        if access not in ACCESS_LEVELS:
            raise ValueError(
                f"{where}.tables.{table}: access must be one of "
                f"{', '.join(repr(a) for a in ACCESS_LEVELS)}, not {access!r}"
            )
        key = table.lower()
        if key in tables:
            raise ValueError(f"{where}.tables: table {table!r} is listed twice")
        tables[key] = access
    return RolePolicy(
        statements=statements,
        tables=tables,
        functions=functions,
        operations=operations,
        **flags,
    )


class Policy:
    """Per-role SQL firewall rules.

    Build one with :meth:`load` / :meth:`from_dict`; ask it with
    :meth:`check_statement` and :meth:`check_operation`.
    """

    def __init__(self, roles: Mapping[str, RolePolicy]) -> None:
        self._roles = dict(roles)

    @property
    def roles(self) -> Mapping[str, RolePolicy]:
        """Role name -> :class:`RolePolicy`."""
        return dict(self._roles)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._roles == other._roles

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Policy(roles={sorted(self._roles)!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file.  Any problem raises :class:`ValueError` naming the file.

        Schema::

            {"version": 1,
             "roles": {
               "<role>": {
                 "statements": ["<SQL or fingerprint>", ...],
                 "tables": {"<table or schema.table>": "none|read|write",
                            "*": "<default for unlisted tables>"},
                 "functions": ["<extra function allowed with table rules>"],
                 "operations": ["<logical operation name>", ...],
                 "allow_ddl": false,
                 "allow_multi_statement": false,
                 "metrics": false,
                 "allow_all": false}}}

        Every role key is optional.  ``metrics`` lets the role read
        ``/v1/metrics`` (so does ``allow_all``; see :class:`server.security.Gate`).
        ``statements`` are normalized with :func:`fingerprint`, so plain SQL
        works as well as fingerprints.
        Table names are compared lower-cased.
        """
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ValueError(f"{source}: cannot read policy file: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<policy>") -> Policy:
        """Build a policy from its parsed JSON; errors name ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key {unknown[0]!r} (expected one of {', '.join(_TOP_KEYS)})"
            )
        version = data.get("version")
        if version != POLICY_VERSION or isinstance(version, bool):
            raise ValueError(
                f"{source}: unsupported policy version {version!r} (expected {POLICY_VERSION})"
            )
        roles = data.get("roles")
        if not isinstance(roles, dict):
            raise ValueError(f"{source}: 'roles' must be an object of role name -> rules")
        return cls(
            {name: _parse_role(rules, f"{source}: roles.{name}") for name, rules in roles.items()}
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, with sorted lists (accepted by :meth:`from_dict`)."""
        return {
            "version": POLICY_VERSION,
            "roles": {name: self._roles[name].to_dict() for name in sorted(self._roles)},
        }

    def to_json(self) -> str:
        """Deterministic JSON text of :meth:`to_dict` (sorted keys, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def _role(self, role: str, fp: str) -> RolePolicy:
        rules = self._roles.get(role)
        if rules is None:
            raise PolicyViolation(f"role {role!r} is not in the policy", fp, "unknown_role")
        return rules

    def check_caller(self, role: str, sql: str) -> None:
        """The checks that come before any work on ``sql``: no lexing, no fingerprint.

        An unknown role is refused; so is a statement longer than the
        longest :data:`STARTUP_STATEMENTS` from a role that may run nothing
        else (no ``statements``, no table it may read, no ``allow_all``).
        """
        rules = self._role(role, "")
        if rules.allow_all or rules.statements or len(sql) <= _STARTUP_MAX_CHARS:
            return
        if any(access != "none" for access in rules.tables.values()):
            return
        raise PolicyViolation(
            f"statement not in the allowlist for role {role!r}: the role may run no "
            "statement but the connection start-up queries",
            "",
            "no_permission",
        )

    def check_statement(self, role: str, sql: str, dialect: str | None = None) -> None:
        """Raise :class:`PolicyViolation` unless ``role`` may run ``sql``.

        In order: an unknown role is refused; ``allow_all`` and
        :data:`STARTUP_STATEMENTS` are allowed;
        text that dialects read differently is refused; several statements
        need ``allow_multi_statement``; transaction control (BEGIN, COMMIT,
        SAVEPOINT, ...) is allowed; DDL needs ``allow_ddl``; a fingerprint in
        ``statements`` is allowed; other kinds (PRAGMA, SET, ...) and
        multi-statement text must be listed; finally, with ``tables`` rules,
        a SELECT/INSERT/UPDATE/DELETE is allowed when every table read is
        ``read`` or ``write``, every table written is ``write``, and every
        function called is in :data:`SAFE_FUNCTIONS` or ``functions``.

        ``dialect`` is the backend the statement runs on: the text is read
        exactly as that backend reads it.
        """
        fp = fingerprint(sql, dialect)
        rules = self._role(role, fp)
        if rules.allow_all or fp in _STARTUP_FINGERPRINTS:
            return
        # Without the second table extractor: only table rules need it, and
        # a role that has none must not make the server pay for it.
        info = classify(sql, dialect, tables=False)
        if info.ambiguity is not None:
            raise PolicyViolation(
                f"statement reads differently across SQL dialects ({info.ambiguity}); "
                f"refused for role {role!r}: {fp}",
                fp,
                "ambiguous",
            )
        if info.is_multi_statement and not rules.allow_multi_statement:
            raise PolicyViolation(
                f"role {role!r} may not run several statements in one request: {fp}",
                fp,
                "multi_statement",
            )
        if info.kind == "transaction":
            return
        if info.kind == "ddl" and not rules.allow_ddl:
            raise PolicyViolation(f"role {role!r} may not run DDL: {fp}", fp, "ddl")
        if fp in rules.statements:
            return
        not_listed = PolicyViolation(
            f"statement not in the allowlist for role {role!r}: {fp}", fp, "not_allowlisted"
        )
        if (
            not rules.tables
            or info.is_multi_statement
            or info.kind not in ("select", "insert", "update", "delete")
        ):
            raise not_listed
        info = classify(sql, dialect)
        if info.table_doubt is not None:
            raise PolicyViolation(
                f"cannot tell every table the statement touches ({info.table_doubt}); "
                f"refused for role {role!r}: {fp}",
                fp,
                "table_access",
            )
        for table in sorted(info.tables_written):
            if rules.table_access(table) != "write":
                raise PolicyViolation(
                    f"role {role!r} may not write table {table!r}: {fp}", fp, "table_access"
                )
        for table in sorted(info.tables_read):
            if rules.table_access(table) not in ("read", "write"):
                raise PolicyViolation(
                    f"role {role!r} may not read table {table!r}: {fp}", fp, "table_access"
                )
        for function in sorted(info.functions):
            if function not in SAFE_FUNCTIONS and function not in rules.functions:
                raise PolicyViolation(
                    f"role {role!r} may not call function {function!r}: {fp}", fp, "function"
                )

    def check_operation(self, role: str, name: str) -> None:
        """Raise :class:`PolicyViolation` unless ``role`` may call logical operation ``name``."""
        rules = self._role(role, "")
        if rules.allow_all or name in rules.operations:
            return
        raise PolicyViolation(f"role {role!r} may not call operation {name!r}", "", "operation")

    def allows_metrics(self, role: str) -> bool:
        """Whether ``role`` may read ``/v1/metrics`` (``metrics: true`` or ``allow_all``)."""
        rules = self._roles.get(role)
        return rules is not None and (rules.allow_all or rules.metrics)


# ---------------------------------------------------------------------------
# Recorder
# ---------------------------------------------------------------------------


class _RecordedRole:
    __slots__ = ("statements", "operations", "ddl", "multi")

    def __init__(self) -> None:
        self.statements: set[str] = set()
        self.operations: set[str] = set()
        self.ddl = False
        self.multi = False


class PolicyRecorder:
    """Collect what each role does and write a strict policy allowing exactly that.

    Thread-safe.  The written policy lists fingerprints and operations only
    (no table rules), and sets ``allow_ddl`` / ``allow_multi_statement`` for
    a role only if it was seen running such a statement (which then still has
    to match a listed fingerprint).  Statements that :func:`classify` finds
    ambiguous are recorded but stay refused by :meth:`Policy.check_statement`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, _RecordedRole] = {}

    def _entry(self, role: str) -> _RecordedRole:
        entry = self._roles.get(role)
        if entry is None:
            entry = self._roles[role] = _RecordedRole()
        return entry

    def record(self, role: str, sql: str, dialect: str | None = None) -> str:
        """Add the fingerprint of ``sql`` to ``role``'s statements; return it."""
        fp = fingerprint(sql, dialect)
        info = classify(sql, dialect)
        with self._lock:
            entry = self._entry(role)
            entry.statements.add(fp)
            entry.ddl = entry.ddl or info.kind == "ddl"
            entry.multi = entry.multi or info.is_multi_statement
        return fp

    def record_operation(self, role: str, name: str) -> None:
        """Add logical operation ``name`` to ``role``'s operations."""
        with self._lock:
            self._entry(role).operations.add(name)

    def to_policy(self) -> Policy:
        """The recorded policy."""
        with self._lock:
            return Policy(
                {
                    role: RolePolicy(
                        statements=frozenset(entry.statements),
                        operations=frozenset(entry.operations),
                        allow_ddl=entry.ddl,
                        allow_multi_statement=entry.multi,
                    )
                    for role, entry in self._roles.items()
                }
            )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_policy` as JSON to ``path`` atomically (temp file + rename)."""
        text = self.to_policy().to_json()
        target = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(target))
        fd, temp = tempfile.mkstemp(
            dir=directory, prefix="." + os.path.basename(target) + ".", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
