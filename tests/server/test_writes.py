"""Which statements count as writes for outcome recording (server.sql.writes).

A statement judged read-only records no outcome, so a retry after a lost
commit answer would be told "did not commit"; every shape that can write,
lock or run code must therefore count as a write.  Examples first, then
generated statements (hypothesis): a write construct placed anywhere in a
read, in any case and with any comments and whitespace around it, is never
judged read-only, and reads built from the plain grammar are.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from session_proxy_server.sql.policy import STARTUP_STATEMENTS
from session_proxy_server.sql.writes import may_write

READS = [
    "SELECT 1",
    "  (SELECT a FROM t) UNION (SELECT b FROM u)",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
    "EXPLAIN QUERY PLAN SELECT a FROM t",
    "PRAGMA table_info(t)",
    "PRAGMA user_version",
    "DESCRIBE t",
    "TABLE t",
    "SELECT count(*) AS n FROM t",
    "SELECT CAST(a AS VARCHAR(20)) FROM t",
    "SELECT a FROM t WHERE b IN (1, 2, 3) AND c = ANY(%(x)s)",
    "SELECT x ->> 'a' FROM t",
    "SELECT a FROM t WHERE a = -1",
    "SELECT a[1] FROM t",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT replace(a, 'x', 'y') FROM t",
    "SELECT t.id, t.note FROM t WHERE t.id = %(pk)s::INTEGER",
    "SELECT a FROM t WHERE b = ? AND c IN (?, ?, ?)",
    "SELECT pg_catalog.version()",
    # Words inside literals and comments are not the statement's words.
    "SELECT 'INSERT INTO t' -- FOR UPDATE\n FROM t",
    "SELECT a /* DELETE FROM t; */ FROM t",
    *STARTUP_STATEMENTS,
]

WRITES = [
    "",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    # functions may write: SELECT enqueue_job(...) was the case
    "SELECT enqueue_job(1)",
    "SELECT nextval('s')",
    "SELECT set_config('a', 'b', false)",
    "SELECT pg_catalog.pg_advisory_lock(1)",
    "SELECT public.lower(a) FROM t",
    'SELECT "count"(*) FROM t',
    "SELECT * FROM f()",
    "SELECT * FROM t, LATERAL g(t.a)",
    "VALUES (f())",
    # EXPLAIN ANALYZE runs the statement
    "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
    "EXPLAIN (ANALYZE) SELECT f()",
    "EXPLAIN (FORMAT JSON, ANALYZE true) SELECT 1",
    "EXPLAIN ANALYSE SELECT 1",
    "ANALYZE SELECT 1",
    # several statements
    "SELECT 1; DELETE FROM t",
    "SELECT 1;DELETE FROM t;",
    # locking clauses
    "SELECT * FROM t FOR\nUPDATE",
    "SELECT * FROM t for /* x */ share",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT * FROM t LOCK IN SHARE MODE",
    # SELECT ... INTO
    "SELECT a INTO new_table FROM t",
    "SELECT a INTO @v FROM t",
    "SELECT 1 FROM t INTO OUTFILE '/tmp/x'",
    # data-modifying CTEs
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT 1",
    "WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x",
    # PRAGMAs that set
    "PRAGMA user_version = 3",
    "PRAGMA journal_mode(WAL)",
    "PRAGMA optimize",
    # user-defined operators, assignments, MySQL executable comments
    "SELECT 1 +++ 2",
    "SELECT 1 <<-> 2",
    "SELECT a := 1",
    "SELECT @x := 1",
    "select 1 /*! , f() */",
]


@pytest.mark.parametrize("sql", READS)
def test_plain_reads_are_read_only(sql: str) -> None:
    assert not may_write(sql)


@pytest.mark.parametrize("sql", WRITES)
def test_everything_that_may_write_counts_as_a_write(sql: str) -> None:
    assert may_write(sql)


# -- generated statements -------------------------------------------------------------

NAMES = st.sampled_from(["t", "task", "job", "public.task", '"Weird Name"', "x1"])
COLUMNS = st.sampled_from(["a", "b", "t.id", "state", "count(*)", "max(b)", "lower(a)", "1"])
VALUES_ = st.sampled_from(["1", "'x'", "%s", "%(p)s", "?", ":p", "-2.5", "NULL"])
COMPARE = st.sampled_from(["=", "<>", "<", ">=", "!=", "LIKE", "IS NOT"])
# Anything the database may read differently from the tokens around it.
GAPS = st.sampled_from([" ", "\n", "\t", "  ", " /* c */ ", " -- c\n", "\r\n"])


def _case(word: str, upper: bool) -> str:
    return word.upper() if upper else word.lower()


@st.composite
def reads(draw: st.DrawFn) -> str:
    """A SELECT built only from plain, read-only pieces."""
    gap = draw(GAPS)
    columns = ", ".join(draw(st.lists(COLUMNS, min_size=1, max_size=3)))
    sql = f"SELECT{gap}{columns}{gap}FROM {draw(NAMES)}"
    if draw(st.booleans()):
        sql += f"{gap}WHERE a {draw(COMPARE)} {draw(VALUES_)}"
    if draw(st.booleans()):
        sql += f"{gap}AND b IN ({draw(VALUES_)}, {draw(VALUES_)})"
    if draw(st.booleans()):
        sql += f"{gap}ORDER BY a DESC LIMIT {draw(VALUES_)}"
    if draw(st.booleans()):
        sql = f"WITH cte AS ({sql}){gap}SELECT * FROM cte"
    return sql


WRITE_CONSTRUCTS = st.sampled_from([
    ("call", "{fn}({value})"),
    ("lock", "FOR{gap}UPDATE"),
    ("lock", "FOR{gap}SHARE"),
    ("lock", "FOR{gap}NO{gap}KEY{gap}UPDATE"),
    ("lock", "FOR{gap}KEY{gap}SHARE"),
    ("lock", "LOCK{gap}IN{gap}SHARE{gap}MODE"),
    ("into", "INTO{gap}{name}"),
    ("multi", ";{gap}DELETE FROM {name}"),
    ("multi", ";{gap}UPDATE {name} SET a = 1"),
    ("cte", "WITH w AS (INSERT INTO {name} VALUES ({value}) RETURNING *){gap}"),
    ("cte", "WITH w AS (DELETE FROM {name} RETURNING *){gap}"),
    ("cte", "WITH w AS (UPDATE {name} SET a = {value} RETURNING a){gap}"),
    ("explain", "EXPLAIN{gap}ANALYZE{gap}"),
    ("explain", "EXPLAIN{gap}(ANALYZE){gap}"),
    ("explain", "EXPLAIN{gap}(FORMAT JSON,{gap}ANALYZE){gap}"),
    ("explain", "EXPLAIN{gap}ANALYSE{gap}"),
])
FUNCTIONS = st.sampled_from(
    ["enqueue_job", "nextval", "setval", "pg_advisory_lock", "public.lower", "app.count",
     "dblink_exec", "lo_import", "sleep", "get_lock", "\"count\"", "fn_1"]
)


@st.composite
def reads_with_a_write(draw: st.DrawFn) -> str:
    """A read with one write construct where that construct can stand."""
    base = draw(reads())
    kind, template = draw(WRITE_CONSTRUCTS)
    gap = draw(GAPS)
    upper = draw(st.booleans())
    piece = template.format(gap=gap, name=draw(NAMES), value=draw(VALUES_),
                            fn=draw(FUNCTIONS))
    if kind != "call":
        piece = " ".join(
            _case(word, upper) if word.isalpha() else word for word in piece.split(" ")
        )
    if kind in ("cte", "explain"):
        return piece + base
    if kind == "call":
        # In the select list, in WHERE, or as a table function.
        where = draw(st.sampled_from(["select", "where", "from"]))
        if where == "select":
            return base.replace("SELECT", f"SELECT {piece},", 1)
        if where == "where":
            return f"{base}{gap}{'AND' if ' WHERE ' in base else 'WHERE'} {piece} = 1"
        return f"SELECT * FROM {piece}"
    return f"{base}{gap}{piece}"


@seed(20240614)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reads_with_a_write())
def test_generated_statements_with_a_write_are_never_read_only(sql: str) -> None:
    assert may_write(sql), sql


@seed(20240614)
@settings(max_examples=500, deadline=None)
@given(reads())
def test_generated_plain_reads_are_read_only(sql: str) -> None:
    assert not may_write(sql), sql
