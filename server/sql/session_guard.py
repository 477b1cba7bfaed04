"""Statements refused whatever the policy: state that outlives a lease, the proxy's records.

The server pools connections per transaction, so whatever one client leaves
on a connection meets the next client of that connection.  Most session
state is cleared between leases (``reset_session`` of the backend profile in
:mod:`session_proxy_server.backends`);
this module refuses, before anything runs, the statements whose effect the
reset cannot undo or that reach data that belongs to no client:

- **the outcome table** (``session_proxy_outcomes``, in schema or database
  ``session_proxy`` on PostgreSQL and MySQL): any identifier, quoted or not,
  in any case and position, or any string literal (which ``::regclass``,
  ``format()``, ``DO`` and function bodies turn into names) naming the table
  or the schema; and the PostgreSQL functions that run SQL given as text or
  dump whole schemas (``query_to_xml``, ``database_to_xml``, ``ts_stat``,
  ``dblink`` ...), which reach it without naming it;
- **client-named prepared statements** (``PREPARE``, ``EXECUTE``,
  ``DEALLOCATE``, MySQL ``DROP PREPARE``): names the driver uses too
  (psycopg's ``_pg3_N``), and MySQL's ``PREPARE ... FROM @var`` is SQL the
  server never sees; ``PREPARE TRANSACTION`` and ``COMMIT/ROLLBACK
  PREPARED`` keep a transaction past its lease;
- **defaults every later session starts with**: ``ALTER SYSTEM``, ``ALTER
  ROLE|USER|DATABASE ... SET|RESET``, MySQL ``SET GLOBAL|PERSIST`` and
  ``@@global.``, PostgreSQL ``LOAD 'library'``;
- **SQLite**: ``ATTACH`` and ``DETACH`` (also server-side file access), and
  ``PRAGMA`` assignments except to the connection-wide pragmas the reset
  restores (:data:`RESET_PRAGMAS`) and the table-argument queries
  (``table_info(t)`` ...); ``VACUUM ... INTO 'file'`` (writes a copy of the
  database anywhere the server may write); the ``sqlite_stmt`` and
  ``sqlite_dbpage`` virtual tables (the text of statements other clients
  left in the connection's statement cache, the raw pages of every table);
- **dynamic SQL in procedural code**: a ``DO`` block or a ``CREATE
  FUNCTION|PROCEDURE|TRIGGER|EVENT`` whose code or body holds ``EXECUTE``
  (PL/pgSQL ``EXECUTE``, MySQL ``EXECUTE IMMEDIATE``): statements built from
  strings at run time reach tables no reading of the text can see, the
  outcome table included;
- **PostgreSQL** ``setseed()`` (anywhere, bodies included): ``DISCARD ALL``
  keeps the seed of ``random()``;
- **MySQL/MariaDB**: ``USE db`` (COM_RESET_CONNECTION keeps the default
  database, so the next client's unqualified names would resolve in the
  database this client chose), ``SET ROLE`` and ``SET DEFAULT ROLE``
  anywhere (the reset keeps the active role too) and ``XA`` transactions (``XA PREPARE`` keeps
  a transaction and its row locks past the lease, past the connection, and
  lets anyone commit it later).

The guard reads the same tokens as the policy (:func:`session_proxy_server.sql.lexer.lex`)
and errs towards refusing: a refused statement changed nothing.
"""

from __future__ import annotations

import functools
import re

from .lexer import Token, lex, split_statements

__all__ = ["RESET_PRAGMAS", "IsolationViolation", "check_sql"]

#: The outcome table's name and its schema's (see :mod:`session_proxy_server.outcomes`).
PROTECTED_NAMES = ("session_proxy_outcomes", "session_proxy")

#: Connection-wide SQLite pragmas a client may set: the server reads them
#: when it opens a connection and puts them back after every lease.
RESET_PRAGMAS = (
    "automatic_index",
    "busy_timeout",
    "cell_size_check",
    "defer_foreign_keys",
    "foreign_keys",
    "ignore_check_constraints",
    "legacy_alter_table",
    "query_only",
    "read_uncommitted",
    "recursive_triggers",
    "reverse_unordered_selects",
    "trusted_schema",
)

#: SQLite pragmas whose argument names a table or index: queries, no state.
_PRAGMA_QUERIES = frozenset(
    """
    foreign_key_check foreign_key_list index_info index_list index_xinfo
    integrity_check quick_check table_info table_list table_xinfo
    """.split()
)

#: Functions that run SQL given as text, or read every table of a schema or
#: database, so reach the outcome table without naming it (PostgreSQL).
_DYNAMIC_SQL_FUNCTIONS = frozenset(
    """
    query_to_xml query_to_xmlschema query_to_xml_and_xmlschema
    table_to_xml table_to_xmlschema table_to_xml_and_xmlschema
    schema_to_xml schema_to_xmlschema schema_to_xml_and_xmlschema
    database_to_xml database_to_xmlschema database_to_xml_and_xmlschema
    cursor_to_xml cursor_to_xmlschema ts_stat ts_rewrite
    """.split()
)

_PREPARED_WORDS = frozenset({"PREPARE", "EXECUTE", "DEALLOCATE"})
#: EXECUTE as a word inside a quoted body (a DO block, a function's $$...$$).
_EXECUTE_WORD = re.compile(r"(?<![\w$])execute(?![\w$])", re.IGNORECASE)
#: Words after ``XA`` that make an XA transaction statement (MySQL/MariaDB).
_XA_WORDS = frozenset({"START", "BEGIN", "END", "PREPARE", "COMMIT", "ROLLBACK", "RECOVER"})
#: Virtual tables that show what other clients left on the connection (SQLite).
_SESSION_TABLES = frozenset({"sqlite_stmt", "sqlite_dbpage"})
_GLOBAL_SCOPES = frozenset({"GLOBAL", "PERSIST", "PERSIST_ONLY"})

# Escapes a quoted token may hide a name behind: PostgreSQL E'' strings
# (octal, \x, \u, \U) and U&'' / U&"" (\XXXX, \+XXXXXX).  Each token is
# read both ways; more readings can only find more names, never fewer.
_E_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{1,3}))"
)
_U_ESCAPE = re.compile(r"\\(?:\+([0-9a-fA-F]{6})|([0-9a-fA-F]{4}))")
_E_BASES = (16, 16, 16, 8)
_U_BASES = (16, 16)
_HEX_LITERAL = re.compile(r"[xX]'([0-9a-fA-F]*)'")

_CACHE_MAX_SQL = 32_768


class IsolationViolation(Exception):
    """A statement the server refuses whatever the policy.

    ``reason`` is a short stable word (``outcome_table``, ``prepared_statement``,
    ``server_default``, ``attach``, ``pragma``, ``dynamic_sql``,
    ``default_database``, ``session_table``, ``session_state``), ``message``
    says which statement and why; ``step`` is set by :func:`check_steps`.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.step: int | None = None


def _unescape(match: re.Match[str], bases: tuple[int, ...]) -> str:
    for base, group in zip(bases, match.groups(), strict=True):
        if group is not None:
            try:
                return chr(int(group, base))
            except (ValueError, OverflowError):
                return match.group()
    return match.group()


def _readings(token: Token) -> list[str]:
    """What a token may mean as text, lower-cased: as written and unescaped."""
    text = token[1].lower()
    readings = [text]
    if "\\" in text:
        readings.append(_E_ESCAPE.sub(lambda m: _unescape(m, _E_BASES), token[1]).lower())
        readings.append(_U_ESCAPE.sub(lambda m: _unescape(m, _U_BASES), token[1]).lower())
    hex_match = _HEX_LITERAL.fullmatch(token[1])
    if hex_match:
        try:
            readings.append(bytes.fromhex(hex_match.group(1)).decode("utf-8", "replace").lower())
        except ValueError:
            pass
    return readings


def _names_protected(token: Token) -> bool:
    kind = token[0]
    if kind in ("w", "q"):
        return any(reading in PROTECTED_NAMES for reading in _readings(token))
    if kind == "l":
        return any(PROTECTED_NAMES[1] in reading for reading in _readings(token))
    return False


def _name(token: Token) -> str:
    return token[1].lower() if token[0] in ("w", "q") else ""


def _check_statement(tokens: tuple[Token, ...], dialect: str | None = None) -> None:
    words = [token[2] for token in tokens]
    for index, token in enumerate(tokens):
        _check_token(tokens, index, token)
    _check_procedural(tokens, words)
    _check_words(tokens, words)
    if dialect in (None, "mysql"):
        _check_role(tokens, words)


def _check_role(tokens: tuple[Token, ...], words: list[str | None]) -> None:
    """Refuse ``SET ROLE`` and ``SET DEFAULT ROLE`` anywhere in a MySQL statement.

    ``COM_RESET_CONNECTION`` keeps the active role (MariaDB 10.11), so a role
    one client set would stay on the pooled connection for the next client,
    with that role's privileges.  Anywhere: a stored program's body is plain
    tokens in MySQL, and ``CALL`` would run it.  PostgreSQL's reset (``SET
    SESSION AUTHORIZATION DEFAULT``, ``RESET ALL``) puts its role back, so
    ``SET ROLE`` stays allowed there.  ``UPDATE t SET role = ...`` (a column
    named ``role``) is an assignment, not the statement, and is allowed.
    """
    for index, word in enumerate(words[:-1]):
        if word != "SET":
            continue
        following = words[index + 1]
        after = tokens[index + 2][1] if index + 2 < len(tokens) else ""
        if (following == "ROLE" and after not in ("=", ":=")) or (
            following == "DEFAULT" and index + 2 < len(words) and words[index + 2] == "ROLE"
        ):
            raise IsolationViolation(
                "SET ROLE is refused on MySQL/MariaDB: the connection reset between "
                "clients keeps the active role, so the next client would run with it",
                "session_state",
            )


def _check_token(tokens: tuple[Token, ...], index: int, token: Token) -> None:
    """Refuse a statement for token ``index`` alone (a name, XA, UESCAPE, PREPARE ... FROM)."""
    if _names_protected(token):
        raise IsolationViolation(
            "statements naming the proxy's outcome table "
            "(session_proxy_outcomes, schema session_proxy) are refused: "
            "it holds other clients' answers",
            "outcome_table",
        )
    # Not only before "(": PostgreSQL's attribute notation calls a
    # function without parentheses (('SELECT ...'::text).ts_stat, or
    # s.ts_stat over FROM lower('SELECT ...') AS s), so the name
    # anywhere, as a word or quoted, is refused.
    if token[0] in ("w", "q"):
        name = _name(token)
        if name in _DYNAMIC_SQL_FUNCTIONS or name.startswith("dblink"):
            raise IsolationViolation(
                f"function {name}() runs SQL given as text or reads whole "
                "schemas, which the server cannot check; refused",
                "dynamic_sql",
            )
    if _name(token) in _SESSION_TABLES:
        raise IsolationViolation(
            f"{_name(token)} shows statements or pages other clients left on the "
            "pooled connection; refused",
            "session_table",
        )
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    if (
        token[2] == "XA"
        and following is not None
        and following[2] in _XA_WORDS
    ):
        raise IsolationViolation(
            "XA transactions are refused: XA PREPARE keeps a transaction and its "
            "locks past the lease, where another client could commit it",
            "prepared_statement",
        )
    if token[2] == "UESCAPE":
        raise IsolationViolation(
            "U&'...' UESCAPE hides names from the server's checks; refused", "dynamic_sql"
        )
    if token[2] == "PREPARE" and index + 2 < len(tokens) and tokens[index + 2][2] == "FROM":
        raise IsolationViolation(
            "PREPARE ... FROM (client-named prepared statements) runs SQL the server "
            "never sees; refused",
            "prepared_statement",
        )


def _check_words(tokens: tuple[Token, ...], words: list[str | None]) -> None:
    """Refuse a statement for its first words (SET GLOBAL, PREPARE, USE, ATTACH ...)."""
    first = words[0]
    second = words[1] if len(words) > 1 else None
    if "SET" in words and any(word in _GLOBAL_SCOPES for word in words):
        raise IsolationViolation(
            "SET GLOBAL / PERSIST (or @@global.) changes what every later session "
            "starts with; refused",
            "server_default",
        )
    if first in _PREPARED_WORDS or (first == "DROP" and second == "PREPARE"):
        raise IsolationViolation(
            f"{first} (client-named prepared statements) is refused: statements "
            "prepared on a pooled connection could answer another client's "
            "queries, or keep a transaction past its lease",
            "prepared_statement",
        )
    if first in ("COMMIT", "ROLLBACK") and "PREPARED" in words:
        raise IsolationViolation(
            f"{first} PREPARED (two-phase transactions) is refused", "prepared_statement"
        )
    if first == "ALTER" and (
        second == "SYSTEM"
        or (second in ("ROLE", "USER", "DATABASE") and ("SET" in words or "RESET" in words))
    ):
        raise IsolationViolation(
            f"ALTER {second} ... SET changes what every later session starts with; refused",
            "server_default",
        )
    if first == "LOAD" and second is None and len(tokens) > 1 and tokens[1][0] == "l":
        raise IsolationViolation(
            "LOAD 'library' stays loaded in the session after its lease; refused",
            "server_default",
        )
    if first == "USE":
        raise IsolationViolation(
            "USE is refused: the default database outlives the lease (the reset "
            "keeps it), so the next client's tables would be this client's choice",
            "default_database",
        )
    if first == "VACUUM" and "INTO" in words:
        raise IsolationViolation(
            "VACUUM ... INTO writes a copy of the database to a file on the server; refused",
            "attach",
        )
    if first in ("ATTACH", "DETACH"):
        raise IsolationViolation(
            f"{first} is refused: attached databases would outlive the lease, and "
            "ATTACH opens files on the server",
            "attach",
        )
    if first == "PRAGMA":
        _check_pragma(tokens)


def _runs_dynamic_sql(tokens: tuple[Token, ...]) -> bool:
    """Whether code or a quoted body holds ``EXECUTE`` (dynamic SQL) as a word."""
    for index, (kind, text, upper) in enumerate(tokens):
        if kind == "l" and _EXECUTE_WORD.search(text):
            return True
        if upper == "EXECUTE":
            following = tokens[index + 1][2] if index + 1 < len(tokens) else None
            # CREATE TRIGGER ... EXECUTE FUNCTION|PROCEDURE name(): the
            # trigger's action, a named function, not SQL built from text.
            if following not in ("FUNCTION", "PROCEDURE"):
                return True
    return False


def _check_procedural(tokens: tuple[Token, ...], words: list[str | None]) -> None:
    """Refuse procedural code that builds SQL from text at run time.

    PL/pgSQL ``EXECUTE`` (in a ``DO`` block or a function body) and MySQL's
    ``EXECUTE IMMEDIATE`` (in a stored program) run statements assembled
    from strings, so no reading of the text can tell which tables they
    reach: ``EXECUTE 'SELECT ... FROM ' || 'session_' || 'proxy...'`` read
    the outcome table without naming it.  Procedural code without dynamic
    SQL is allowed; its statements are in the text the guard reads.
    """
    first = words[0]
    procedural = first == "DO" or (
        first == "CREATE" and any(
            word in ("FUNCTION", "PROCEDURE", "TRIGGER", "EVENT") for word in words[1:6]
        )
    )
    if procedural and _runs_dynamic_sql(tokens):
        raise IsolationViolation(
            f"{first} with EXECUTE (dynamic SQL built from text at run time) is refused: "
            "the server cannot tell which tables such code reaches, the proxy's own "
            "records included",
            "dynamic_sql",
        )


def _check_pragma(tokens: tuple[Token, ...]) -> None:
    index = 1
    if index + 1 < len(tokens) and tokens[index + 1][0] == ".":
        index += 2  # schema.name
    if index >= len(tokens):
        return
    name = _name(tokens[index])
    rest = tokens[index + 1 :]
    if not rest or name in RESET_PRAGMAS:
        return
    if name in _PRAGMA_QUERIES and rest[0][0] == "(":
        return
    if name == "journal_mode" and _pragma_value(rest) == "wal":
        # Persistent and file-wide, not per connection: nothing to restore,
        # and the mode a shared server wants anyway.  Airflow's connect
        # hook sends it on every new SQLite connection.
        return
    raise IsolationViolation(
        f"PRAGMA {name or tokens[index][1]} with a value is refused: only "
        f"{', '.join(RESET_PRAGMAS)} may be set (the server restores them "
        "after every transaction)",
        "pragma",
    )


def _pragma_value(rest: tuple[Token, ...]) -> str:
    """The lower-cased value of ``= value`` or ``(value)`` after a pragma's name."""
    values = [token for token in rest if token[0] in ("w", "l", "q")]
    if len(values) != 1 or len(rest) not in (2, 3):
        return ""
    return values[0][1].strip("'\"").lower()


def _check_uncached(sql: str, dialect: str | None) -> tuple[str, str] | None:
    lowered = sql.lower()
    if PROTECTED_NAMES[1] in lowered:
        # Anywhere, comments included: MySQL runs /*! ... */ as code.
        return (
            "statements naming the proxy's outcome table (session_proxy_outcomes, "
            "schema session_proxy) are refused: it holds other clients' answers",
            "outcome_table",
        )
    if "setseed" in lowered:
        # Anywhere, function bodies included: DISCARD ALL keeps the seed, so
        # the next client's random() would be known to this one.
        return (
            "setseed() is refused: the seed of random() outlives the transaction, "
            "so the next client's random values would be predictable",
            "session_state",
        )
    if "/*!" in sql or "/*m!" in lowered:
        return (
            "MySQL executable comments (/*! ... */) hide code from the server's "
            "checks; refused",
            "hidden_code",
        )
    tokens, _ambiguity = lex(sql, dialect)
    try:
        for statement in split_statements(tokens):
            _check_statement(statement, dialect)
    except IsolationViolation as exc:
        return exc.message, exc.reason
    return None


@functools.lru_cache(maxsize=4096)
def _check_cached(sql: str, dialect: str | None) -> tuple[str, str] | None:
    return _check_uncached(sql, dialect)


def check_sql(sql: str, dialect: str | None = None) -> None:
    """Raise :class:`IsolationViolation` if ``sql`` may not run through the proxy.

    ``dialect`` is the lexer's backend name (None reads the text as every
    supported backend might).
    """
    found = (
        _check_cached(sql, dialect) if len(sql) <= _CACHE_MAX_SQL
        else _check_uncached(sql, dialect)
    )
    if found is not None:
        raise IsolationViolation(*found)


def check_steps(steps: list[dict], dialect: str | None = None) -> None:
    """Check every statement of a pipeline request; the violation names its step."""
    for index, step in enumerate(steps):
        sql = step.get("sql")
        if isinstance(sql, str):
            try:
                check_sql(sql, dialect)
            except IsolationViolation as exc:
                exc.step = index
                raise
