"""Which statements provably only read: decides whether a commit records its outcome.

A commit records its answer in the outcome table (:mod:`session_proxy_server.outcomes`)
when its transaction may have written, so that a retry after a lost answer
learns the truth even from a restarted server.  Judging a transaction that
wrote as read-only is the dangerous mistake: no record, and the retry is
told "did not commit" about a commit that committed.  Judging a read as a
write only costs one outcome row.  So :func:`may_write` is fail-safe: a
statement counts as read-only only when every test below proves it, and
anything it cannot read counts as a write.

A statement is read-only when all of these hold:

- it starts with ``SELECT``, ``VALUES``, ``TABLE``, ``WITH``, ``SHOW``,
  ``DESCRIBE``/``DESC``, ``EXPLAIN`` (not ``EXPLAIN ANALYZE``, which runs the
  statement) or a ``PRAGMA`` that only reads (no value, a name of
  :data:`READ_PRAGMAS` or an introspection pragma with its argument);
- it is one statement (no ``;`` followed by more text);
- no word of :data:`WRITE_WORDS` appears anywhere: data-modifying CTEs,
  ``SELECT ... INTO``, locking clauses (``FOR UPDATE/SHARE/NO KEY
  UPDATE/KEY SHARE``, ``LOCK IN SHARE MODE``), ``ANALYZE``, ``CALL``;
- every function it calls is one of :data:`PURE_FUNCTIONS` (known builtins
  that never write), unqualified or in ``pg_catalog``.  Any other call,
  ``SELECT enqueue_job(?)``, ``nextval(?)`` or a schema-qualified user
  function, may write;
- it uses only the operators of :data:`PLAIN_OPERATORS` (a PostgreSQL
  user-defined operator runs a function; ``:=`` assigns);
- :func:`session_proxy_server.sql.classify.classify` agrees: a ``select``-like kind, no table
  written, no row lock, no dialect ambiguity (text two backends read
  differently, such as MySQL's ``/*! ... */``, is not provably anything).

The tests work on :func:`session_proxy_server.sql.fingerprint.fingerprint`, which has dropped
comments and literals, so no word inside a string or a comment counts.

What text cannot show: a view, a row-level security policy or a domain
check that calls a writing function, or a builtin name overloaded by a
user function for a user type.  On PostgreSQL the executor asks the
database at commit time whether a transaction that looked read-only has a
transaction id (:meth:`session_proxy_server.executor.Executor._wrote`).  SQLite has no
stored functions, so its text is the whole story.  On MySQL a view over a
writing stored function is the remaining gap (documented in
docs/reliability.md).
"""

from __future__ import annotations

import functools
import re

from .classify import classify
from .fingerprint import fingerprint

#: Statements longer than this are judged uncached.
_CACHE_MAX_SQL = 32_768

#: First words of statements that can only read (more tests follow).
READ_HEADS = frozenset({"SELECT", "VALUES", "TABLE", "WITH", "SHOW", "DESCRIBE", "DESC",
                        "EXPLAIN", "PRAGMA"})

#: Words that make a read-looking statement write, lock or run something.
WRITE_WORDS = frozenset(
    """
    INSERT UPDATE DELETE MERGE UPSERT REPLACE INTO FOR LOCK ANALYZE ANALYSE CALL
    DO SET COPY NOTIFY LISTEN PREPARE EXECUTE OUTFILE DUMPFILE
    """.split()
)

#: Builtin functions that never write, on any of the three backends.
PURE_FUNCTIONS = frozenset(
    """
    abs array_agg avg bool_and bool_or cast ceil ceiling char_length
    character_length coalesce concat concat_ws count cube current_database
    current_date current_schema current_time current_timestamp current_user
    database date datetime dense_rank extract first_value floor
    generate_series greatest group_concat grouping ifnull iif json_extract
    julianday lag last_value lead least length localtime localtimestamp lower
    ltrim max min mod now nullif octet_length rank replace rollup round
    row_number rtrim string_agg strftime substr substring sum trim typeof upper
    version
    """.split()
)

#: Words after which "(" is syntax, not a call.
_SYNTAX_BEFORE_PAREN = frozenset(
    """
    ALL AND ANY ARRAY AS BETWEEN BY CASE DISTINCT ELSE EXCEPT EXISTS EXPLAIN
    FILTER FROM HAVING IN INTERSECT IS JOIN LATERAL LIKE ILIKE LIMIT NOT OFFSET
    ON ONLY OR OVER ROW SELECT SOME THEN UNION USING VALUES WHEN WHERE WINDOW
    WITH WITHIN RECURSIVE MATERIALIZED OVERLAPS TABLE
    """.split()
)

#: Operators of ordinary reads; any other may be user-defined (PostgreSQL).
PLAIN_OPERATORS = frozenset(
    """
    = <> != < > <= >= + - * / % || :: -> ->> #> #>> @> <@ ?| ?& @@ @ & | ^ ~
    """.split()
)

#: PRAGMAs that only read when given no value.
READ_PRAGMAS = frozenset(
    """
    application_id auto_vacuum busy_timeout cache_size case_sensitive_like
    collation_list compile_options data_version database_list encoding
    foreign_key_check foreign_keys freelist_count function_list
    integrity_check journal_mode module_list page_count page_size pragma_list
    query_only quick_check read_uncommitted recursive_triggers schema_version
    synchronous table_list user_version
    """.split()
)

#: PRAGMAs whose argument names what to describe (everything else sets).
INTROSPECTION_PRAGMAS = frozenset(
    """
    foreign_key_check foreign_key_list index_info index_list index_xinfo
    integrity_check quick_check table_info table_list table_xinfo
    """.split()
)

_TOKEN = re.compile(
    r'\s+|(?P<q>"(?:[^"]|"")*")|(?P<w>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)'
    r"|(?P<p>[(),.;])|(?P<b>[\[\]])|(?P<v>\?(?![|&]))|(?P<o>[^\sA-Za-z0-9_\"(),.;\[\]\x80-\U0010ffff]+)"
    r"|(?P<n>\d\w*)"
)
#: The "+" of a collapsed list: "(?+)" lists any number of "?".
_COLLAPSED = re.compile(r"(?<=[?)])\+\)")


def _tokens(text: str) -> list[tuple[str, str]] | None:
    """(kind, text) tokens of a fingerprint; None when some text is not understood."""
    text = _COLLAPSED.sub(")", text)
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        pos = match.end()
        if match.lastgroup is not None:
            out.append((match.lastgroup, match.group()))
    return out


def _pragma_reads(tokens: list[tuple[str, str]]) -> bool:
    """``PRAGMA [schema.]name`` or ``PRAGMA [schema.]name(arg)`` that only reads."""
    rest = tokens[1:]
    if len(rest) >= 2 and rest[1] == ("p", "."):
        rest = rest[2:]
    if not rest or rest[0][0] != "w":
        return False
    name = rest[0][1].lower()
    if len(rest) == 1:
        return name in READ_PRAGMAS
    argument = rest[1:]
    return (
        name in INTROSPECTION_PRAGMAS
        and argument[0] == ("p", "(")
        and argument[-1] == ("p", ")")
        and all(kind in ("w", "q", "o", "p") and text not in ("=", ";")
                for kind, text in argument)
    )


def _calls_only_pure_functions(tokens: list[tuple[str, str]]) -> bool:
    """Every ``name(`` in ``tokens`` is syntax, a type, or a pure builtin."""
    for index, (kind, text) in enumerate(tokens):
        if kind not in ("w", "q") or index + 1 >= len(tokens) or tokens[index + 1] != ("p", "("):
            continue
        before = tokens[index - 1] if index else ("", "")
        if kind == "w" and text.upper() in _SYNTAX_BEFORE_PAREN:
            continue
        if before == ("o", "::") or (before[0] == "w" and before[1].upper() == "AS"):
            continue  # a type with its length: CAST(x AS VARCHAR(20)), x::NUMERIC(10, 2)
        if kind == "q":
            return False  # "count"(*) could name anything
        if before == ("p", "."):
            qualifier = tokens[index - 2][1] if index >= 2 else ""
            if qualifier.lower() != "pg_catalog" or (index >= 3 and tokens[index - 3] == (
                "p", "."
            )):
                return False  # a function of some schema: could be anything
        if text.lower() not in PURE_FUNCTIONS:
            return False
    return True


def _judge(sql: str) -> bool:
    # The hand scanner alone: sqlglot's second opinion on tables is for table
    # rules, and the words below already count every write construct.  (With
    # it, any client could make the server parse every statement it sends.)
    info = classify(sql, tables=False)
    if (
        info.is_multi_statement
        or info.ambiguity is not None
        or info.tables_written
        or info.locks
        or info.kind not in ("select", "other")
    ):
        return True
    tokens = _tokens(fingerprint(sql))
    if not tokens:
        return True
    start = 0
    while start < len(tokens) and tokens[start] == ("p", "("):
        start += 1
    if start >= len(tokens) or tokens[start][0] != "w":
        return True
    head = tokens[start][1].upper()
    if head not in READ_HEADS:
        return True
    if head == "PRAGMA":
        return not (start == 0 and _pragma_reads(tokens))
    called = {name.rsplit(".", 1)[-1] for name in info.functions} - {"explain"}
    if not called <= PURE_FUNCTIONS:
        return True
    operators_in_a_row = 0
    for index, (kind, text) in enumerate(tokens):
        if kind == "p" and text == ";":
            return True
        if kind == "o":
            operators_in_a_row += 1
            if text not in PLAIN_OPERATORS:
                return True
            # "+++" reaches the fingerprint as "+ + +": a user-defined
            # operator; only a sign may follow another operator.
            if operators_in_a_row > 2 or (operators_in_a_row == 2 and text not in "+-"):
                return True
        else:
            operators_in_a_row = 0
        if kind == "w" and text.upper() in WRITE_WORDS:
            following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
            if not (text.upper() == "REPLACE" and following == ("p", "(")):
                return True
    return not _calls_only_pure_functions(tokens)


@functools.lru_cache(maxsize=4096)
def _judge_cached(sql: str) -> bool:
    return _judge(sql)


def may_write(sql: str) -> bool:
    """Whether ``sql`` may write, lock or run code: False only when provably read-only."""
    if len(sql) > _CACHE_MAX_SQL:
        return _judge(sql)
    return _judge_cached(sql)
