"""Unit tests of the SQL firewall (server/sql: fingerprint, classify, policy); no database."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from session_proxy_server.sql.classify import StatementInfo, classify
from session_proxy_server.sql.fingerprint import fingerprint
from session_proxy_server.sql.policy import SAFE_FUNCTIONS, Policy, PolicyViolation, RolePolicy
from session_proxy_server.sql.recorder import PolicyRecorder

# ---------------------------------------------------------------------------
# fingerprint
# ---------------------------------------------------------------------------

BASE = "SELECT a FROM t WHERE id = ? AND name = ?"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t WHERE id = ? AND name = ?",
        "SELECT a FROM t WHERE id = ?1 AND name = ?2",
        "SELECT a FROM t WHERE id = :1 AND name = :2",
        "SELECT a FROM t WHERE id = :id AND name = :name",
        "SELECT a FROM t WHERE id = %s AND name = %s",
        "SELECT a FROM t WHERE id = %(id_1)s AND name = %(name_1)s",
        "SELECT a FROM t WHERE id = $1 AND name = $2",
        "SELECT a FROM t WHERE id = %(id_1)s::INTEGER AND name = %(name_1)s::VARCHAR",
        "SELECT a FROM t WHERE id = 5 AND name = 'x'",
        "SELECT a FROM t WHERE id = 1 AND name = E'x'",
        "select a from t where id = 12.5e-3 and name = N'x'",
        "SELECT  a\n  FROM t\tWHERE id=? AND name=?",
        "SELECT a FROM t WHERE id = 0x1F AND name = 'it''s'",
        "SELECT a FROM t -- comment\nWHERE /* c */ id = ? AND name = ?;",
        "SELECT a FROM t WHERE id = ? AND name = ?;;",
    ],
)
def test_fingerprint_equivalent_across_paramstyles_and_literals(sql: str) -> None:
    assert fingerprint(sql) == BASE


def test_fingerprint_spec_example() -> None:
    first = "SELECT a FROM t WHERE id = 5 AND name = 'x' AND k IN (1, 2, 3)"
    second = "select a from t where id = ? and name = ? and k in (?, ?)"
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) == "SELECT a FROM t WHERE id = ? AND name = ? AND k IN (?+)"


@pytest.mark.parametrize(
    "in_list",
    [
        "(?)",
        "(?, ?, ?)",
        "(%s, %s)",
        "(%(k_1_1)s, %(k_1_2)s, %(k_1_3)s, %(k_1_4)s)",
        "(%(k_1_1)s::UUID, %(k_1_2)s::UUID)",
        "(:k_1, :k_2)",
        "(__[POSTCOMPILE_k_1])",
        "(1, 2, 3)",
        "('a', 'b')",
        "( ? ,? )",
    ],
)
def test_in_list_collapses(in_list: str) -> None:
    assert fingerprint(f"SELECT a FROM t WHERE k IN {in_list}") == (
        "SELECT a FROM t WHERE k IN (?+)"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (a, b) VALUES (?, ?)",
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?), (?, ?), (?, ?)",
        "INSERT INTO t (a, b) VALUES (%(a_m0)s, %(b_m0)s), (%(a_m1)s, %(b_m1)s)",
        "INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s), (%s, %s)",
        "INSERT INTO t (a, b) VALUES (%(a__0)s::INTEGER, %(b__0)s::VARCHAR), "
        "(%(a__1)s::INTEGER, %(b__1)s::VARCHAR)",
        "insert into t (a, b) values (1, 'x'), (2, 'y')",
    ],
)
def test_insertmanyvalues_collapses(sql: str) -> None:
    assert fingerprint(sql) == "INSERT INTO t(a, b) VALUES (?+)"


def test_insertmanyvalues_with_sentinel_subquery_collapses() -> None:
    template = (
        "INSERT INTO t (a) SELECT p0::INTEGER FROM (VALUES {rows}) "
        "AS imp_sen(p0, sen_counter) ORDER BY sen_counter RETURNING t.id"
    )
    one = template.format(rows="(%(a__0)s, 0)")
    three = template.format(rows="(%(a__0)s, 0), (%(a__1)s, 1), (%(a__2)s, 2)")
    assert fingerprint(one) == fingerprint(three)
    assert "(VALUES (?+))" in fingerprint(one)


def test_identical_non_placeholder_values_rows_collapse_but_different_rows_do_not() -> None:
    same = fingerprint("INSERT INTO t (a, b) VALUES (?, DEFAULT), (?, DEFAULT)")
    assert same == "INSERT INTO t(a, b) VALUES (?, DEFAULT)"
    mixed = fingerprint("INSERT INTO t (a, b) VALUES (?, DEFAULT), (?, ?)")
    assert mixed == "INSERT INTO t(a, b) VALUES (?, DEFAULT), (?+)"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("SELECT a FROM t WHERE id = ?", "SELECT a FROM t WHERE id > ?"),
        ("SELECT a FROM t WHERE id = ?", "SELECT b FROM t WHERE id = ?"),
        ("SELECT a FROM t", "SELECT A FROM T"),
        ("SELECT f(?, ?)", "SELECT f(?, a)"),
        ("SELECT a FROM t WHERE k IN (?, ?)", "SELECT a FROM t WHERE k IN (?, a)"),
        ("SELECT a FROM t WHERE b IS NULL", "SELECT a FROM t WHERE b IS TRUE"),
        ("SELECT a FROM t WHERE b = ? OR 1 = 1", "SELECT a FROM t WHERE b = ?"),
        ("SELECT a FROM t; SELECT 1", "SELECT a FROM t"),
        ("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = ? -- x\nOR c = ?"),
    ],
)
def test_fingerprint_distinguishes(first: str, second: str) -> None:
    assert fingerprint(first) != fingerprint(second)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select count(*) from t", "SELECT COUNT(*) FROM t"),
        ("SELECT MyCol FROM MyTable", "SELECT MyCol FROM MyTable"),
        ('SELECT "MyCol" FROM "my_table"', "SELECT MyCol FROM my_table"),
        ("SELECT `MyCol` FROM `my_table`", "SELECT MyCol FROM my_table"),
        ('SELECT "order", "my col" FROM t', 'SELECT "order", "my col" FROM t'),
        ('SELECT "a""b" FROM t', 'SELECT "a""b" FROM t'),
        ("SELECT s.t.c FROM s.t", "SELECT s.t.c FROM s.t"),
        (
            "SELECT a FROM t WHERE b IS NULL AND c = TRUE",
            "SELECT a FROM t WHERE b IS NULL AND c = TRUE",
        ),
        (
            "select a from t where b is null or c = false",
            "SELECT a FROM t WHERE b IS NULL OR c = FALSE",
        ),
        ("SELECT x::TEXT FROM t", "SELECT x::TEXT FROM t"),
        ("SELECT ?::TIMESTAMP WITHOUT TIME ZONE", "SELECT ?"),
        ("SELECT %(x)s::INTEGER[] + 1", "SELECT ? + ?"),
        ("SELECT %(x)s::NUMERIC(10, 2)", "SELECT ?"),
        ("SELECT a % b, c %% d", "SELECT a % b, c % d"),
        ("SELECT data->>'k', data #> '{a}' FROM t", "SELECT data ->> ?, data #> ? FROM t"),
        ("SELECT a<=b, a <> b, a||b", "SELECT a <= b, a <> b, a || b"),
        ("SELECT $$a;b$$, $tag$ -- $tag$", "SELECT ?, ?"),
        ("SELECT t.* FROM t", "SELECT t.* FROM t"),
        ("SELECT a[1] FROM t", "SELECT a[?] FROM t"),
        ("SELECT 1 /* a */ /*+ hint */ -- b", "SELECT ?"),
        ("", ""),
        ("  -- only a comment", ""),
    ],
)
def test_fingerprint_text(sql: str, expected: str) -> None:
    assert fingerprint(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ';'", "SELECT ?"),
        ("SELECT '--'", "SELECT ?"),
        ("SELECT '/* not a comment */'", "SELECT ?"),
        ("SELECT 'a;b -- c'", "SELECT ?"),
        ("SELECT 'it''s; -- fine'", "SELECT ?"),
        ('SELECT ";" FROM t', 'SELECT ";" FROM t'),
    ],
)
def test_quoted_semicolons_and_comment_markers_do_not_split(sql: str, expected: str) -> None:
    info = classify(sql)
    assert not info.is_multi_statement
    assert info.ambiguity is None
    assert fingerprint(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t WHERE id = 5 AND name = 'x' AND k IN (1, 2, 3)",
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        "SELECT a FROM t WHERE k IN ((1, 2), (3, 4))",
        'SELECT "order", "Mixed", `x` FROM s."T" WHERE a = $$x$$',
        "SELECT a % b, c %% d, e::TEXT, ?::UUID FROM t",
        "SELECT COUNT(*), f(?) FROM t JOIN u ON t.a = u.b WHERE x IN (SELECT y FROM z)",
        "SELECT 1; DROP TABLE x",
        "SELECT (a",
        "SELECT a)",
        "SELECT a[1:2] FROM t",
        "SELECT data ->> 'k' FROM t WHERE b::TEXT = ?",
    ],
)
def test_fingerprint_is_idempotent(sql: str) -> None:
    once = fingerprint(sql)
    assert fingerprint(once) == once


def test_tuple_in_collapses() -> None:
    assert fingerprint("SELECT a FROM t WHERE (a, b) IN ((1, 2), (3, 4), (5, 6))") == (
        "SELECT a FROM t WHERE (a, b) IN ((?+)+)"
    )


def _compiled(statement: sa.sql.ClauseElement) -> set[str]:
    dialects = [sqlite.pysqlite.dialect(), postgresql.psycopg.dialect(), mysql.pymysql.dialect()]
    return {
        str(statement.compile(dialect=d, compile_kwargs={"render_postcompile": render}))
        for d in dialects
        for render in (False, True)
    }


_META = sa.MetaData()
_TASK = sa.Table(
    "task_instance",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20)),
    sa.Column("u", sa.Uuid),
)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            sa.select(_TASK.c.id).where(_TASK.c.id.in_([1, 2, 3]), _TASK.c.name == "x"),
            "SELECT task_instance.id FROM task_instance "
            "WHERE task_instance.id IN (?+) AND task_instance.name = ?",
        ),
        (
            sa.select(_TASK.c.id).where(_TASK.c.u.in_(["a", "b"])),
            "SELECT task_instance.id FROM task_instance WHERE task_instance.u IN (?+)",
        ),
        (
            sa.update(_TASK).where(_TASK.c.id == 5).values(name=sa.func.lower(_TASK.c.name)),
            "UPDATE task_instance SET name = LOWER(task_instance.name) WHERE task_instance.id = ?",
        ),
        (
            sa.delete(_TASK).where(_TASK.c.id == 5),
            "DELETE FROM task_instance WHERE task_instance.id = ?",
        ),
    ],
)
def test_sqlalchemy_output_of_all_three_drivers_shares_one_fingerprint(
    statement: sa.sql.ClauseElement, expected: str
) -> None:
    variants = _compiled(statement)
    assert len(variants) > 1  # the drivers really render different text
    assert {fingerprint(sql) for sql in variants} == {expected}
    assert all(classify(sql).ambiguity is None for sql in variants)


def test_uncached_long_statement_fingerprints_like_short_one() -> None:
    rows = ", ".join(["(?, ?)"] * 5000)
    long_sql = f"INSERT INTO t (a, b) VALUES {rows}"
    assert len(long_sql) > 32_768
    assert fingerprint(long_sql) == fingerprint("INSERT INTO t (a, b) VALUES (?, ?)")
    assert classify(long_sql).tables_written == {"t"}


# ---------------------------------------------------------------------------
# classify
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT 1", "select"),
        ("  select a from t", "select"),
        ("(SELECT a FROM t) UNION (SELECT b FROM u)", "select"),
        ("WITH c AS (SELECT 1) SELECT * FROM c", "select"),
        ("VALUES (1), (2)", "select"),
        ("INSERT INTO t (a) VALUES (?)", "insert"),
        ("INSERT OR REPLACE INTO t (a) VALUES (?)", "insert"),
        ("REPLACE INTO t (a) VALUES (?)", "insert"),
        ("WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c", "insert"),
        ("UPDATE t SET a = 1", "update"),
        ("DELETE FROM t", "delete"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "delete"),
        ("CREATE TABLE x (a INT)", "ddl"),
        ("ALTER TABLE x ADD COLUMN b INT", "ddl"),
        ("DROP TABLE x", "ddl"),
        ("TRUNCATE TABLE x", "ddl"),
        ("RENAME TABLE x TO y", "ddl"),
        ("GRANT SELECT ON x TO bob", "ddl"),
        ("REVOKE SELECT ON x FROM bob", "ddl"),
        ("COMMENT ON TABLE x IS 'y'", "ddl"),
        ("ATTACH DATABASE 'f.db' AS f", "ddl"),
        ("DETACH DATABASE f", "ddl"),
        ("VACUUM", "ddl"),
        ("SAVEPOINT sa_savepoint_1", "transaction"),
        ("RELEASE SAVEPOINT sa_savepoint_1", "transaction"),
        ("ROLLBACK TO SAVEPOINT sa_savepoint_1", "transaction"),
        ("BEGIN", "transaction"),
        ("START TRANSACTION", "transaction"),
        ("COMMIT", "transaction"),
        ("ROLLBACK", "transaction"),
        ("COMMIT PREPARED 'x'", "other"),
        ("PRAGMA foreign_keys = ON", "other"),
        ("PRAGMA table_info(t)", "other"),
        ("SET search_path TO x", "other"),
        ("SHOW TABLES", "other"),
        ("EXPLAIN ANALYZE DELETE FROM t", "other"),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "other"),
        ("SELECT a INTO newt FROM t", "other"),
        ("FROBNICATE the database", "other"),
        ("", "other"),
        ("-- nothing", "other"),
    ],
)
def test_classify_kind(sql: str, kind: str) -> None:
    assert classify(sql).kind == kind


@pytest.mark.parametrize(
    ("sql", "multi"),
    [
        ("SELECT 1; DROP TABLE x", True),
        ("SELECT 1; SELECT 2", True),
        ("SELECT 1;DELETE FROM t", True),
        ("SELECT ';'", False),
        ("SELECT 1;", False),
        ("SELECT 1 ;  ", False),
        ("SELECT 1;;", False),
        ("SELECT 1; -- trailing comment", False),
        ("SELECT 1; /* trailing */", False),
        ("SELECT 1 /* ; DROP TABLE x */", False),
        ("SELECT 1 -- ; DROP TABLE x", False),
        ("SELECT '; DROP TABLE x'", False),
        ('SELECT "a;b" FROM t', False),
    ],
)
def test_multi_statement_detection(sql: str, multi: bool) -> None:
    assert classify(sql).is_multi_statement is multi


def test_multi_statement_kind_is_most_restrictive_part() -> None:
    info = classify("SELECT a FROM t; DROP TABLE x")
    assert info.kind == "ddl"
    assert info.tables_read == {"t"}
    assert classify("SELECT 1; DELETE FROM t").kind == "delete"


@pytest.mark.parametrize(
    ("sql", "read", "written"),
    [
        ("SELECT a FROM t", {"t"}, set()),
        ("SELECT a FROM t1, t2 AS b, t3 c", {"t1", "t2", "t3"}, set()),
        (
            "SELECT * FROM a JOIN b ON a.x = b.x LEFT OUTER JOIN c ON 1 = 1 CROSS JOIN d",
            {"a", "b", "c", "d"},
            set(),
        ),
        ("SELECT * FROM a NATURAL JOIN b STRAIGHT_JOIN c", {"a", "b", "c"}, set()),
        ("SELECT * FROM (secret CROSS JOIN t)", {"secret", "t"}, set()),
        ("SELECT * FROM t WHERE x IN (SELECT y FROM u)", {"t", "u"}, set()),
        ("SELECT (SELECT max(q) FROM v) FROM t", {"t", "v"}, set()),
        ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)", {"t", "u"}, set()),
        ("SELECT * FROM (SELECT * FROM inner_t) AS s", {"inner_t"}, set()),
        ("SELECT ARRAY(SELECT x FROM hidden)", {"hidden"}, set()),
        ("SELECT coalesce((SELECT a FROM u), 0) FROM t", {"t", "u"}, set()),
        ("WITH c AS (SELECT * FROM base) SELECT * FROM c JOIN o ON 1 = 1", {"base", "o"}, set()),
        ("WITH c AS (SELECT 1), d AS (SELECT * FROM c) SELECT * FROM d", set(), set()),
        ("WITH c AS (SELECT * FROM c) SELECT * FROM c", {"c"}, set()),
        (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT * FROM c",
            set(),
            set(),
        ),
        (
            "SELECT * FROM secret, (WITH secret AS (SELECT 1) SELECT * FROM secret) AS s",
            {"secret"},
            set(),
        ),
        ("SELECT * FROM public.task, `db`.`x`", {"public.task", "db.x"}, set()),
        ('SELECT * FROM "Public"."Task" t', {"public.task"}, set()),
        ("SELECT * FROM `Dag_Run`", {"dag_run"}, set()),
        ("SELECT EXTRACT(year FROM t.created) FROM t", {"t"}, set()),
        ("SELECT substring(a FROM 1 FOR 2), trim(BOTH ' ' FROM b) FROM t", {"t"}, set()),
        ("SELECT * FROM t WHERE a IS NOT DISTINCT FROM b", {"t"}, set()),
        ("SELECT * FROM t ORDER BY a, b", {"t"}, set()),
        ("SELECT * FROM json_each(?) AS j", set(), set()),
        ("SELECT * FROM t JOIN LATERAL (SELECT * FROM u) s ON true", {"t", "u"}, set()),
        ("SELECT * FROM a JOIN b USING (id)", {"a", "b"}, set()),
        ("SELECT * FROM only", {"only"}, set()),
        ("INSERT INTO t (a) VALUES (?)", set(), {"t"}),
        ("INSERT INTO s.t (a) SELECT b FROM u", {"u"}, {"s.t"}),
        ("INSERT OR IGNORE INTO t (a) VALUES (?)", set(), {"t"}),
        ("INSERT IGNORE INTO t (a) VALUES (?)", set(), {"t"}),
        ("REPLACE INTO t (a) VALUES (?)", set(), {"t"}),
        (
            "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a = excluded.a",
            set(),
            {"t"},
        ),
        ("INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = VALUES(a)", set(), {"t"}),
        ("UPDATE t SET a = (SELECT b FROM u) WHERE id IN (SELECT id FROM v)", {"u", "v"}, {"t"}),
        ("UPDATE t SET x = 1 FROM u WHERE t.id = u.id", {"u"}, {"t"}),
        ("UPDATE t1 JOIN t2 ON t1.a = t2.a SET t1.b = 1", {"t2"}, {"t1", "t2"}),
        ("UPDATE OR IGNORE t SET a = 1", set(), {"t"}),
        ("DELETE FROM t WHERE a = 1", set(), {"t"}),
        ("DELETE FROM t USING u WHERE t.a = u.a", {"u"}, {"t"}),
        ("DELETE a FROM t AS a JOIN u ON a.x = u.x", {"t", "u"}, {"t"}),
        ("DELETE QUICK FROM t WHERE a = 1", set(), {"t"}),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", set(), {"t"}),
        ("SELECT a INTO newt FROM t", {"t"}, {"newt"}),
        ("SELECT (replace(a, 'x', 'y')) FROM t", {"t"}, set()),
    ],
)
def test_tables_read_and_written(sql: str, read: set[str], written: set[str]) -> None:
    info = classify(sql)
    assert info.tables_read == read
    assert info.tables_written == written


@pytest.mark.parametrize(
    ("sql", "locks"),
    [
        ("SELECT * FROM t FOR UPDATE", True),
        ("SELECT * FROM t FOR UPDATE SKIP LOCKED", True),
        ("SELECT * FROM t FOR SHARE", True),
        ("SELECT * FROM t FOR NO KEY UPDATE OF t NOWAIT", True),
        ("SELECT * FROM t FOR KEY SHARE", True),
        ("SELECT * FROM t LOCK IN SHARE MODE", True),
        ("SELECT * FROM t", False),
        ("SELECT 'FOR UPDATE' FROM t", False),
        ("INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = ?", False),
    ],
)
def test_locks(sql: str, locks: bool) -> None:
    assert classify(sql).locks is locks


@pytest.mark.parametrize(
    ("sql", "functions"),
    [
        ("SELECT count(*), max(a), lower(b) FROM t", {"count", "max", "lower"}),
        ("SELECT pg_sleep(10)", {"pg_sleep"}),
        ("SELECT pg_catalog.pg_read_file('x')", {"pg_catalog.pg_read_file"}),
        ("SELECT CAST(a AS VARCHAR(20)), a::NUMERIC(10, 2) FROM t", {"cast"}),
        ("SELECT * FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1)", set()),
        ("INSERT INTO t (a, b) VALUES (?, ?)", set()),
        ("WITH c(x) AS (SELECT 1) SELECT * FROM c", set()),
        ("SELECT * FROM json_each(?)", {"json_each"}),
        ("SELECT 'sleep(1)'", set()),
    ],
)
def test_functions(sql: str, functions: set[str]) -> None:
    assert classify(sql).functions == functions


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a\\'' OR 1=1 -- '",  # MySQL: backslash escape ends the string earlier
        "SELECT E'a\\'; DROP TABLE x; --'",  # SQLite: E is an identifier
        'SELECT "a\\"; x"',
        "SELECT 'C:\\'",  # unterminated under the backslash reading
        "SELECT a # '\n; DROP TABLE x; -- '",  # MySQL: '#' comment
        "SELECT a [x'] , (SELECT pw FROM users) AS ['] FROM t",  # SQLite: [..] identifier
        "SELECT 1 /*! ; DROP TABLE x */",  # MySQL executable comment
        "SELECT 1 /* /* */ ' */ ; DROP TABLE x; --'",  # PostgreSQL nests comments
        "SELECT a FROM t WHERE b = $$ OR 1 = 1 OR $$",  # SQLite/MySQL: $$ is a name
        "SELECT a FROM t WHERE b = '%s'",  # pyformat drivers substitute inside strings
        "SELECT a FROM t WHERE b = ? /* %(x)s */",
        "SELECT 1 --x",  # MySQL: not a comment without a space
        "SELECT 1 -- c\r; DROP TABLE t",  # PostgreSQL ends '--' comments at \r
        "SELECT 'abc",
        "SELECT 1 /* open",
        "SELECT 1\x00; DROP TABLE t",
    ],
)
def test_dialect_ambiguities_are_reported(sql: str) -> None:
    assert classify(sql).ambiguity is not None


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'C:\\path'",
        "SELECT 'it''s'",
        "SELECT data #> '{a}' FROM t",
        "SELECT a[1] FROM t",
        "SELECT a FROM t WHERE b LIKE '100%%s'",
        "SELECT 1 /* 100% sure */",
        "SELECT 1 --\nFROM t",
        "SELECT 1 -- comment\r\n",
    ],
)
def test_unambiguous_text_is_not_flagged(sql: str) -> None:
    assert classify(sql).ambiguity is None


def test_classify_returns_frozen_info() -> None:
    info = classify("SELECT a FROM t")
    assert isinstance(info, StatementInfo)
    assert isinstance(info.tables_read, frozenset)
    with pytest.raises(AttributeError):
        info.kind = "ddl"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Policy loading
# ---------------------------------------------------------------------------


def _write(tmp_path: Path, data: object, name: str = "policy.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _role(**rules: object) -> dict[str, object]:
    return {"version": 1, "roles": {"worker": rules}}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("{not json", "not valid JSON"),
        ([], "expected a JSON object, got list"),
        ({"roles": {}}, "unsupported policy version None (expected 1)"),
        ({"version": 2, "roles": {}}, "unsupported policy version 2 (expected 1)"),
        ({"version": True, "roles": {}}, "unsupported policy version True"),
        ({"version": 1}, "'roles' must be an object"),
        ({"version": 1, "roles": [], "x": 1}, "unknown key 'x'"),
        ({"version": 1, "roles": {"worker": []}}, "roles.worker: expected an object, got list"),
        (_role(tabels={}), "roles.worker: unknown key 'tabels'"),
        (
            _role(tables={"dag_run": "readonly"}),
            "roles.worker.tables.dag_run: access must be one of 'none', 'read', 'write', "
            "not 'readonly'",
        ),
        (_role(tables=["dag_run"]), "roles.worker.tables: expected an object, got list"),
        (_role(tables={"T": "read", "t": "write"}), "table 't' is listed twice"),
        (_role(statements="SELECT 1"), "roles.worker.statements: expected a list of strings"),
        (_role(statements=["SELECT 1", 5]), "roles.worker.statements[1]: expected a non-empty"),
        (_role(statements=["  "]), "roles.worker.statements[0]: expected a non-empty"),
        (_role(operations=[None]), "roles.worker.operations[0]"),
        (_role(allow_ddl="yes"), "roles.worker.allow_ddl: expected true or false, got 'yes'"),
        (_role(allow_all=1), "roles.worker.allow_all: expected true or false, got 1"),
    ],
)
def test_load_errors_name_the_file_and_the_problem(
    tmp_path: Path, data: object, problem: str
) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as caught:
        Policy.load(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    assert problem in message


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json: cannot read policy file"):
        Policy.load(missing)


def test_load_normalizes_statements_and_tables(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _role(
            statements=["select a from t where id = 5 -- hand written"],
            tables={"Dag_Run": "read"},
            functions=["My_Func"],
        ),
    )
    policy = Policy.load(path)
    rules = policy.roles["worker"]
    assert rules.statements == {"SELECT a FROM t WHERE id = ?"}
    assert rules.tables == {"dag_run": "read"}
    assert rules.functions == {"my_func"}
    policy.check_statement("worker", "SELECT a FROM t WHERE id = %(id_1)s")


def test_to_json_round_trips(tmp_path: Path) -> None:
    data = {
        "version": 1,
        "roles": {
            "worker": {
                "statements": ["SELECT a FROM t WHERE id = ?", "DELETE FROM t"],
                "tables": {"task_instance": "write", "*": "none"},
                "functions": ["json_extract"],
                "operations": ["heartbeat", "get_dag_run"],
                "allow_ddl": True,
                "allow_multi_statement": True,
            },
            "admin": {"allow_all": True},
        },
    }
    policy = Policy.load(_write(tmp_path, data))
    text = policy.to_json()
    reloaded = Policy.load(_write(tmp_path, text, "again.json"))
    assert reloaded == policy
    assert reloaded.to_json() == text
    parsed = json.loads(text)
    assert list(parsed["roles"]) == ["admin", "worker"]
    assert parsed["roles"]["worker"]["operations"] == ["get_dag_run", "heartbeat"]
    assert parsed["roles"]["admin"] == {"allow_all": True}


# ---------------------------------------------------------------------------
# Policy.check_statement
# ---------------------------------------------------------------------------

SELECT_TI = "SELECT task_instance.id FROM task_instance WHERE task_instance.id = ?"
SELECT_TI_FP = "SELECT task_instance.id FROM task_instance WHERE task_instance.id = ?"


def _policy(**roles: dict[str, object]) -> Policy:
    return Policy.from_dict({"version": 1, "roles": roles}, source="test")


def _violation(policy: Policy, role: str, sql: str) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as caught:
        policy.check_statement(role, sql)
    return caught.value


@pytest.fixture
def policy() -> Policy:
    return _policy(
        worker={
            "statements": [SELECT_TI, "PRAGMA foreign_keys = ON"],
            "operations": ["heartbeat"],
        },
        tabled={
            "tables": {"task_instance": "write", "dag_run": "read", "*": "none"},
            "functions": ["json_extract"],
        },
        readall={"tables": {"*": "read"}},
        migrator={"allow_ddl": True, "statements": ["CREATE TABLE x (a INT)"]},
        batcher={"allow_multi_statement": True, "statements": ["SELECT 1; SELECT 2"]},
        admin={"allow_all": True},
        empty={},
    )


def test_unknown_role(policy: Policy) -> None:
    error = _violation(policy, "ghost", "SELECT 1")
    assert str(error) == "role 'ghost' is not in the policy"
    assert error.message == "role 'ghost' is not in the policy"
    assert error.reason == "unknown_role"
    assert error.fingerprint == "SELECT ?"


@pytest.mark.parametrize(
    "sql",
    [
        SELECT_TI,
        "SELECT task_instance.id FROM task_instance WHERE task_instance.id = %(id_1)s",
        "SELECT task_instance.id FROM task_instance WHERE task_instance.id = %(id_1)s::INTEGER",
        "select task_instance.id from task_instance where task_instance.id = 42",
        "pragma foreign_keys = on",
        "SAVEPOINT sa_savepoint_1",
        "RELEASE SAVEPOINT sa_savepoint_1",
        "ROLLBACK TO SAVEPOINT sa_savepoint_1",
    ],
)
def test_allowlisted_and_transaction_statements_pass(policy: Policy, sql: str) -> None:
    policy.check_statement("worker", sql)


def test_transactions_pass_even_for_an_empty_role(policy: Policy) -> None:
    policy.check_statement("empty", "SAVEPOINT x")
    policy.check_statement("empty", "ROLLBACK TO SAVEPOINT x")


def test_not_in_allowlist(policy: Policy) -> None:
    error = _violation(policy, "worker", "SELECT * FROM connection WHERE conn_id = 'x'")
    assert error.message == (
        "statement not in the allowlist for role 'worker': "
        "SELECT * FROM connection WHERE conn_id = ?"
    )
    assert error.fingerprint == "SELECT * FROM connection WHERE conn_id = ?"
    assert error.reason == "not_allowlisted"


def test_multi_statement_refused(policy: Policy) -> None:
    error = _violation(policy, "worker", f"{SELECT_TI}; DROP TABLE x")
    assert error.message == (
        f"role 'worker' may not run several statements in one request: {SELECT_TI_FP}; DROP TABLE x"
    )
    assert error.reason == "multi_statement"


def test_multi_statement_allowed_only_when_listed(policy: Policy) -> None:
    policy.check_statement("batcher", "SELECT 1; SELECT 2")
    error = _violation(policy, "batcher", "SELECT 1; DELETE FROM t")
    assert error.reason == "not_allowlisted"


def test_ddl_refused(policy: Policy) -> None:
    error = _violation(policy, "worker", "DROP TABLE task_instance")
    assert error.message == "role 'worker' may not run DDL: DROP TABLE task_instance"
    assert error.reason == "ddl"
    assert error.fingerprint == "DROP TABLE task_instance"


def test_ddl_refused_even_with_table_rules(policy: Policy) -> None:
    assert _violation(policy, "readall", "DROP TABLE anything").reason == "ddl"


def test_ddl_with_allow_ddl_must_still_be_listed(policy: Policy) -> None:
    policy.check_statement("migrator", "create table x (a int)")
    error = _violation(policy, "migrator", "DROP TABLE x")
    assert error.message == "statement not in the allowlist for role 'migrator': DROP TABLE x"


@pytest.mark.parametrize(
    ("role", "sql", "fp"),
    [
        ("readall", "PRAGMA writable_schema = 1", "PRAGMA writable_schema = ?"),
        ("readall", "SET search_path TO evil", "SET search_path TO evil"),
        ("worker", "PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys = OFF"),
    ],
)
def test_other_kinds_refused_unless_listed(policy: Policy, role: str, sql: str, fp: str) -> None:
    error = _violation(policy, role, sql)
    assert error.reason == "not_allowlisted"
    assert error.message == f"statement not in the allowlist for role {role!r}: {fp}"
    assert error.fingerprint == fp


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM task_instance JOIN dag_run ON dag_run.id = task_instance.run_id",
        "UPDATE task_instance SET state = ? WHERE id IN (SELECT ti_id FROM dag_run)",
        "INSERT INTO task_instance (a) SELECT b FROM dag_run",
        "DELETE FROM task_instance WHERE id = ?",
        "SELECT json_extract(data, '$.a') FROM dag_run",
        "SELECT count(*) FROM task_instance",
        "SELECT 1",
        "SELECT * FROM task_instance FOR UPDATE",
    ],
)
def test_table_rules_allow(policy: Policy, sql: str) -> None:
    policy.check_statement("tabled", sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "INSERT INTO connection (a) VALUES (?)",
            "role 'tabled' may not write table 'connection': INSERT INTO connection(a) VALUES (?+)",
        ),
        (
            "UPDATE dag_run SET state = ?",
            "role 'tabled' may not write table 'dag_run': UPDATE dag_run SET state = ?",
        ),
        (
            "SELECT * FROM task_instance JOIN connection ON 1 = 1",
            "role 'tabled' may not read table 'connection': "
            "SELECT * FROM task_instance JOIN connection ON ? = ?",
        ),
        (
            "SELECT * FROM task_instance WHERE x IN (SELECT password FROM ab_user)",
            "role 'tabled' may not read table 'ab_user': "
            "SELECT * FROM task_instance WHERE x IN (SELECT password FROM ab_user)",
        ),
        (
            "WITH d AS (DELETE FROM dag_run RETURNING *) SELECT * FROM d",
            "role 'tabled' may not write table 'dag_run': "
            "WITH d AS (DELETE FROM dag_run RETURNING *) SELECT * FROM d",
        ),
    ],
)
def test_table_rules_deny(policy: Policy, sql: str, message: str) -> None:
    error = _violation(policy, "tabled", sql)
    assert error.message == message
    assert error.reason == "table_access"


def test_table_rule_without_star_defaults_to_none() -> None:
    policy = _policy(r={"tables": {"t": "read"}})
    policy.check_statement("r", "SELECT * FROM t")
    assert _violation(policy, "r", "SELECT * FROM u").message == (
        "role 'r' may not read table 'u': SELECT * FROM u"
    )


def test_star_write_allows_unlisted_writes() -> None:
    policy = _policy(r={"tables": {"*": "write", "secret": "none"}})
    policy.check_statement("r", "DELETE FROM anything")
    assert _violation(policy, "r", "SELECT * FROM secret").reason == "table_access"


def test_unsafe_function_refused_with_table_rules(policy: Policy) -> None:
    error = _violation(policy, "readall", "SELECT pg_sleep(100)")
    assert error.message == "role 'readall' may not call function 'pg_sleep': SELECT pg_sleep(?+)"
    assert error.reason == "function"
    assert "pg_sleep" not in SAFE_FUNCTIONS


def test_unsafe_function_allowed_when_statement_is_listed() -> None:
    policy = _policy(r={"statements": ["SELECT pg_advisory_lock(?)"], "tables": {"*": "read"}})
    policy.check_statement("r", "SELECT pg_advisory_lock(42)")
    assert _violation(policy, "r", "SELECT pg_advisory_unlock(42)").reason == "function"


def test_without_table_rules_only_the_allowlist_counts(policy: Policy) -> None:
    error = _violation(policy, "worker", "SELECT 1")
    assert error.reason == "not_allowlisted"


def test_ambiguous_statement_refused_even_if_its_fingerprint_is_listed() -> None:
    sql = "SELECT a FROM t WHERE b = 'x\\'' OR 1 = 1 -- '"
    policy = _policy(r={"statements": [sql], "tables": {"*": "write"}})
    error = _violation(policy, "r", sql)
    assert error.reason == "ambiguous"
    assert error.message == (
        "statement reads differently across SQL dialects (backslash escape in quoted text); "
        "refused for role 'r': SELECT a FROM t WHERE b = ?"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE x",
        "SELECT 1; DROP TABLE x",
        "PRAGMA writable_schema = 1",
        "SELECT pg_sleep(1)",
        "SELECT $$x$$",
    ],
)
def test_allow_all_allows_everything(policy: Policy, sql: str) -> None:
    policy.check_statement("admin", sql)


def test_policy_violation_fields() -> None:
    error = PolicyViolation("msg", "SELECT ?", "ddl")
    assert (str(error), error.message, error.fingerprint, error.reason) == (
        "msg",
        "msg",
        "SELECT ?",
        "ddl",
    )


# ---------------------------------------------------------------------------
# Policy.check_operation
# ---------------------------------------------------------------------------


def test_check_operation(policy: Policy) -> None:
    policy.check_operation("worker", "heartbeat")
    policy.check_operation("admin", "anything_at_all")
    with pytest.raises(PolicyViolation) as caught:
        policy.check_operation("worker", "delete_everything")
    assert caught.value.message == "role 'worker' may not call operation 'delete_everything'"
    assert caught.value.reason == "operation"
    with pytest.raises(PolicyViolation, match="role 'ghost' is not in the policy"):
        policy.check_operation("ghost", "heartbeat")


# ---------------------------------------------------------------------------
# PolicyRecorder
# ---------------------------------------------------------------------------


def test_recorder_round_trip(tmp_path: Path) -> None:
    recorder = PolicyRecorder()
    worker_sql = [
        "SELECT a FROM t WHERE id = ? AND k IN (?, ?, ?)",
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)",
        "UPDATE t SET a = ? WHERE id = ?",
        "SAVEPOINT sa_savepoint_1",
        "PRAGMA foreign_keys = ON",
    ]
    for sql in worker_sql:
        recorder.record("worker", sql)
    assert recorder.record("scheduler", "DELETE FROM job WHERE id = %s") == (
        "DELETE FROM job WHERE id = ?"
    )
    recorder.record_operation("worker", "heartbeat")
    recorder.record_operation("scheduler", "get_dag_run")

    path = tmp_path / "recorded.json"
    recorder.save(path)
    policy = Policy.load(path)

    for sql in worker_sql:
        policy.check_statement("worker", sql)
    # Same statements in another paramstyle and batch size still pass.
    policy.check_statement("worker", "SELECT a FROM t WHERE id = %(id)s AND k IN (%(k_1)s)")
    policy.check_statement("worker", "INSERT INTO t (a, b) VALUES (1, 'x')")
    policy.check_statement("scheduler", "DELETE FROM job WHERE id = 7")
    policy.check_operation("worker", "heartbeat")
    policy.check_operation("scheduler", "get_dag_run")

    new = _violation(policy, "worker", "DELETE FROM t WHERE id = ?")
    assert (
        new.message
        == "statement not in the allowlist for role 'worker': DELETE FROM t WHERE id = ?"
    )
    assert new.fingerprint == "DELETE FROM t WHERE id = ?"
    # Recorded policies are strict: no table rules, no cross-role leakage.
    assert _violation(policy, "scheduler", worker_sql[2]).reason == "not_allowlisted"
    assert _violation(policy, "worker", "DROP TABLE t").reason == "ddl"
    with pytest.raises(PolicyViolation):
        policy.check_operation("worker", "get_dag_run")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert "tables" not in saved["roles"]["worker"]
    assert saved["roles"]["worker"]["statements"] == sorted(
        {fingerprint(sql) for sql in worker_sql}
    )


def test_recorder_records_ddl_and_multi_statement_flags(tmp_path: Path) -> None:
    recorder = PolicyRecorder()
    recorder.record("migrator", "CREATE TABLE x (a INT)")
    recorder.record("migrator", "SELECT 1; SELECT 2")
    path = tmp_path / "p.json"
    recorder.save(path)
    policy = Policy.load(path)
    rules = policy.roles["migrator"]
    assert rules.allow_ddl and rules.allow_multi_statement
    policy.check_statement("migrator", "CREATE TABLE x (a INT)")
    policy.check_statement("migrator", "SELECT 1; SELECT 2")
    assert _violation(policy, "migrator", "DROP TABLE x").reason == "not_allowlisted"
    assert _violation(policy, "migrator", "SELECT 1; SELECT 3; SELECT 4").reason == (
        "not_allowlisted"
    )


def test_recorder_output_is_deterministic(tmp_path: Path) -> None:
    statements = [("b", "SELECT 2 FROM y"), ("a", "SELECT 1 FROM x"), ("b", "SELECT 1 FROM x")]
    first, second = PolicyRecorder(), PolicyRecorder()
    for role, sql in statements:
        first.record(role, sql)
        first.record_operation(role, f"op_{sql[-1]}")
    for role, sql in reversed(statements):
        second.record(role, sql)
        second.record_operation(role, f"op_{sql[-1]}")
    first.save(tmp_path / "1.json")
    second.save(tmp_path / "2.json")
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()


def test_recorder_save_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("old contents", encoding="utf-8")
    recorder = PolicyRecorder()
    recorder.record("r", "SELECT 1")
    recorder.save(path)
    assert Policy.load(path).roles["r"].statements == {"SELECT ?"}
    assert sorted(os.listdir(tmp_path)) == ["policy.json"]  # no temp file left behind


def test_recorder_save_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "is_a_dir"
    target.mkdir()
    (target / "keep").write_text("x", encoding="utf-8")
    recorder = PolicyRecorder()
    recorder.record("r", "SELECT 1")
    with pytest.raises(OSError):
        recorder.save(target)
    assert sorted(os.listdir(tmp_path)) == ["is_a_dir"]


def test_recorder_is_thread_safe(tmp_path: Path) -> None:
    recorder = PolicyRecorder()
    threads_count, per_thread = 8, 150
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                recorder.record("shared", f"SELECT c{i} FROM t WHERE id = {n}")
                recorder.record(f"own{n}", f"SELECT c{i}, d{n} FROM t")
                recorder.record_operation("shared", f"op{i % 10}")
                if i % 50 == 0:
                    recorder.to_policy()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    path = tmp_path / "p.json"
    recorder.save(path)
    policy = Policy.load(path)
    roles = policy.roles
    assert len(roles["shared"].statements) == per_thread
    assert roles["shared"].operations == {f"op{i}" for i in range(10)}
    for n in range(threads_count):
        assert len(roles[f"own{n}"].statements) == per_thread
        policy.check_statement(f"own{n}", f"SELECT c0, d{n} FROM t")


def test_role_policy_defaults() -> None:
    rules = RolePolicy()
    assert rules.table_access("anything") == "none"
    assert not rules.allow_all and not rules.allow_ddl and not rules.allow_multi_statement


def test_dialect_startup_statements_need_no_listing() -> None:
    from session_proxy_server.sql.policy import STARTUP_STATEMENTS

    policy = Policy.from_dict({"version": 1, "roles": {"worker": {"tables": {"t": "read"}}}})
    for sql in STARTUP_STATEMENTS:
        policy.check_statement("worker", sql)
    policy.check_statement("worker", "SELECT\n  VERSION( )")  # fingerprints, not exact text
    with pytest.raises(PolicyViolation) as refused:
        policy.check_statement("intruder", "SELECT VERSION()")
    assert refused.value.reason == "unknown_role"
    with pytest.raises(PolicyViolation) as refused:
        policy.check_statement("worker", "SELECT VERSION(), pg_read_file('/etc/passwd')")
    assert refused.value.reason in ("not_allowlisted", "function")
