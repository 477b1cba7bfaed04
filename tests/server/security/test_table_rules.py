"""Table rules see every table a statement touches, however it is spelled.

Examples for issue 14, item 2: the ``TABLE x`` shorthand, set operations,
LATERAL, CTE scope, schema-, database-qualified and quoted names on each
backend, how a qualified name meets a rule (:func:`session_proxy_server.sql.tables.rule_access`),
and statements the extractors cannot read, which are refused (fail closed).
The generated, PostgreSQL-checked proof is in
``test_table_extraction_oracle.py``.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import Path

import pytest
import sqlalchemy as sa

from session_proxy_server.sql.classify import classify
from session_proxy_server.sql.lexer import lex, split_statements
from session_proxy_server.sql.policy import Policy, PolicyViolation
from session_proxy_server.sql.scanner import Scanner
from session_proxy_server.sql.tables import MAX_DEPTH, parse_budget, rule_access
from tests.conftest import backend_url

ALLOW = {"tables": {"task": "read", "xcom": "read", "*": "none"}}
DENY = {"tables": {"connection": "none", "*": "read"}}


def _policy() -> Policy:
    return Policy.from_dict({"version": 1, "roles": {"allow": ALLOW, "deny": DENY}})


def _refused(role: str, sql: str) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as caught:
        _policy().check_statement(role, sql)
    return caught.value


# The statements of the independent attack, and their kin on each backend.
ALLOWLIST_BYPASSES = [
    "SELECT task.owner, task.state FROM task UNION TABLE connection",
    "SELECT task.owner FROM task UNION ALL TABLE connection",
    "SELECT * FROM task EXCEPT TABLE connection",
    "SELECT * FROM task, LATERAL (TABLE session_proxy.session_proxy_outcomes) AS o",
    "SELECT * FROM task CROSS JOIN LATERAL (TABLE connection) AS c",
    "SELECT * FROM (TABLE connection) AS c",
    "TABLE connection",
    "(TABLE connection)",
    "WITH t AS (TABLE connection) SELECT * FROM t",
    "SELECT (SELECT max(password) FROM connection) FROM task",
    "SELECT * FROM task ORDER BY (SELECT count(*) FROM connection)",
    "SELECT * FROM task LIMIT (SELECT count(*) FROM connection)",
    "SELECT * FROM task JOIN xcom ON EXISTS (SELECT 1 FROM connection)",
    "SELECT count(*) FROM task GROUP BY owner HAVING count(*) > (SELECT 1 FROM connection)",
    "SELECT * FROM task WHERE EXISTS (VALUES ((SELECT password FROM connection)))",
    "WITH xcom AS (SELECT * FROM xcom) SELECT * FROM xcom, connection",
    "SELECT * FROM task, (WITH connection AS (SELECT 1) SELECT 1) AS s, connection",
    "SELECT * FROM other_schema.task",
    "SELECT * FROM dbname.public.xcom",
    "SELECT * FROM main.task",  # SQLite: may be another attached database's
    "SELECT * FROM temp.task",
    "SELECT * FROM `otherdb`.`task`",  # MySQL: another database on the server
]


@pytest.mark.parametrize("sql", ALLOWLIST_BYPASSES)
def test_allow_list_lets_nothing_else_through(sql: str) -> None:
    error = _refused("allow", sql)
    assert error.reason in ("table_access", "not_allowlisted"), error.message


DENYLIST_BYPASSES = [
    "SELECT * FROM public.connection",
    "SELECT * FROM dbname.public.connection",
    'SELECT * FROM "connection"',
    'SELECT * FROM "public"."connection"',
    'SELECT * FROM "CONNECTION"',
    "SELECT * FROM CONNECTION",
    "SELECT * FROM `connection`",
    "SELECT * FROM `appdb`.`connection`",
    "SELECT * FROM appdb.connection",
    "SELECT * FROM main.connection",
    "SELECT * FROM temp.connection",
    "SELECT * FROM attached_db.connection",
    "SELECT * FROM ONLY public.connection",
    "SELECT * FROM task UNION TABLE public.connection",
    "SELECT * FROM task, LATERAL (TABLE dbname.public.connection) AS c",
    "WITH c AS (SELECT * FROM public.connection) SELECT * FROM c",
    "WITH connection AS (SELECT 1) SELECT * FROM public.connection",
    "WITH connection AS (SELECT * FROM connection) SELECT * FROM connection",
    "INSERT INTO task (owner) SELECT password FROM public.connection",
    "UPDATE task SET owner = c.password FROM main.connection AS c",
    "DELETE FROM task USING dbname.public.connection AS c WHERE c.id = task.id",
    "UPDATE task SET owner = 'x' RETURNING (SELECT password FROM public.connection)",
]


@pytest.mark.parametrize("sql", DENYLIST_BYPASSES)
def test_deny_list_is_not_bypassed_by_qualification(sql: str) -> None:
    error = _refused("deny", sql)
    assert error.reason == "table_access", error.message
    assert "connection" in error.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM task JOIN xcom ON xcom.task_id = task.id",
        "SELECT * FROM task UNION TABLE xcom",
        "SELECT * FROM task, LATERAL (TABLE xcom) AS x",
        "WITH connection AS (SELECT * FROM task) SELECT * FROM connection",
        "SELECT * FROM task WHERE id IN (SELECT task_id FROM xcom)",
    ],
)
def test_allow_list_still_allows_its_tables(sql: str) -> None:
    _policy().check_statement("allow", sql)


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM task", "SELECT * FROM public.task", "SELECT * FROM other.connection_log"],
)
def test_deny_list_still_allows_other_tables(sql: str) -> None:
    _policy().check_statement("deny", sql)


@pytest.mark.parametrize(
    ("rules", "reference", "access"),
    [
        # A rule for the bare name: certain for the bare name only.
        ({"connection": "none", "*": "read"}, "connection", "none"),
        ({"connection": "none", "*": "read"}, "public.connection", "none"),
        ({"connection": "none", "*": "read"}, "db.public.connection", "none"),
        ({"task": "read", "*": "none"}, "task", "read"),
        ({"task": "read", "*": "none"}, "public.task", "none"),
        ({"task": "read", "*": "write"}, "public.task", "read"),
        # A qualified rule: certain for itself and with the database in front.
        ({"public.task": "read", "*": "none"}, "public.task", "read"),
        ({"public.task": "read", "*": "none"}, "db.public.task", "read"),
        ({"public.task": "read", "*": "none"}, "task", "none"),
        ({"public.secret": "none", "*": "read"}, "secret", "none"),
        ({"public.secret": "none", "*": "read"}, "other.secret", "read"),
        # Several rules may name the reference: the most restrictive wins.
        ({"task": "write", "other.task": "none", "*": "none"}, "task", "write"),
        ({"task": "write", "other.task": "read", "*": "write"}, "other.task", "read"),
        ({"task": "read", "other.task": "none", "*": "write"}, "x.task", "read"),
        ({"task": "write", "*": "read"}, "db.other.task", "read"),
        ({}, "anything", "none"),
    ],
)
def test_rule_access(rules: dict[str, str], reference: str, access: str) -> None:
    assert rule_access(rules, reference) == access


def test_table_doubt_fails_closed() -> None:
    deep = "SELECT * FROM task WHERE id = " + "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    info = classify(deep)
    assert info.table_doubt is not None and "deeper" in info.table_doubt
    error = _refused("deny", deep)
    assert error.reason == "table_access"
    assert "cannot tell every table" in error.message
    # An allowlisted fingerprint is judged by the allowlist, not the extractor.
    listed = Policy.from_dict({"version": 1, "roles": {"r": {"statements": [deep], **DENY}}})
    listed.check_statement("r", deep)


def test_statement_no_dialect_parses_is_refused_for_table_rules() -> None:
    sql = "SELECT * FROM task WHERE id = ANY SOME ALL (1)"
    assert classify(sql).table_doubt == "no SQL dialect parses the statement"
    assert "cannot tell every table" in _refused("deny", sql).message


def test_insertmanyvalues_batches_parse_as_one_row() -> None:
    rows = ", ".join(["(%(a)s::INTEGER, %(b)s::VARCHAR)"] * 5000)
    info = classify(f"INSERT INTO xcom (a, b) VALUES {rows} RETURNING xcom.id")
    assert info.table_doubt is None
    assert info.tables_written == {"xcom"}


# ---------------------------------------------------------------------------
# On the real backends: the refused spellings do reach the protected table.
# ---------------------------------------------------------------------------


def _spellings(backend: str, dbname: str, attached: str) -> list[str]:
    return {
        "sqlite": ["main.t14_secret", f"{attached}.t14_secret", "temp.t14_temp"],
        "mysql": [f"{dbname}.t14_secret", f"`{dbname}`.`t14_secret`"],
        "postgresql": ["public.t14_secret", f"{dbname}.public.t14_secret",
                       '"public"."t14_secret"'],
    }[backend]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_qualified_spellings_reach_the_table_and_are_refused(
    backend: str, tmp_path: Path
) -> None:
    url = backend_url(backend, tmp_path / "main.db")
    engine = sa.create_engine(url)
    attached = "side"
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS t14_secret")
            conn.exec_driver_sql("CREATE TABLE t14_secret (pw VARCHAR(10))")
            conn.exec_driver_sql("INSERT INTO t14_secret VALUES ('s')")
            if backend == "sqlite":
                conn.exec_driver_sql(f"ATTACH DATABASE '{tmp_path / 'side.db'}' AS {attached}")
                conn.exec_driver_sql(f"CREATE TABLE {attached}.t14_secret (pw TEXT)")
                conn.exec_driver_sql(f"INSERT INTO {attached}.t14_secret VALUES ('s')")
                conn.exec_driver_sql("CREATE TEMP TABLE t14_temp (pw TEXT)")
                conn.exec_driver_sql("INSERT INTO temp.t14_temp VALUES ('s')")
            dbname = conn.exec_driver_sql(
                {"sqlite": "SELECT 'main'", "mysql": "SELECT DATABASE()",
                 "postgresql": "SELECT current_database()"}[backend]
            ).scalar()
            policy = Policy.from_dict({"version": 1, "roles": {"deny": {"tables": {
                "t14_secret": "none", "t14_temp": "none", "*": "read"}}}})
            for name in _spellings(backend, dbname, attached):
                sql = f"SELECT pw FROM {name}"
                assert conn.exec_driver_sql(sql).scalar() == "s", sql  # it is the table
                with pytest.raises(PolicyViolation) as caught:
                    policy.check_statement("deny", sql)
                assert caught.value.reason == "table_access", sql
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS t14_secret")
        engine.dispose()


def _scanner_calls(sql: str) -> int:
    """Python calls made while the hand scanner reads ``sql`` and lists its tables."""
    (statement,) = split_statements(lex(sql, "postgresql")[0])
    profile = cProfile.Profile()
    profile.enable()
    scanner = Scanner(statement)
    scanner.run()
    scanner.tables_read()
    profile.disable()
    return pstats.Stats(profile).total_calls


@pytest.mark.parametrize("shape", ["distinct", "same_name_nested"])
def test_scanner_work_is_linear_in_ctes_times_reads(shape: str) -> None:
    """Four times the CTEs and table reads cost about four times the work, not sixteen.

    Each read used to be checked against every CTE scope (reads x CTEs).
    """

    def statement(n: int) -> str:
        if shape == "distinct":
            ctes = ", ".join(f"c{i} AS (SELECT 1)" for i in range(n))
            reads = " UNION ALL ".join(f"SELECT * FROM t{i}" for i in range(n))
            return f"WITH {ctes} {reads}"
        ctes = ", ".join(f"c{i} AS (WITH a AS (SELECT 1) SELECT * FROM a)" for i in range(n))
        return f"WITH {ctes} " + " UNION ALL ".join(f"SELECT * FROM a, c{i}" for i in range(n))

    small, large = _scanner_calls(statement(300)), _scanner_calls(statement(1200))
    assert large / small < 5.0, (small, large)


def test_one_request_parses_a_bounded_amount_of_new_sql() -> None:
    """New statements past the request's parse budget are refused, and not remembered so."""
    policy = _policy()

    def statement(n: int) -> str:
        columns = " + ".join(f"task.c{n}_{i}" for i in range(150))
        return f"SELECT {columns} FROM task"

    budget = 3 * len(statement(0)) + 100  # room for about three new statements (x3 dialects)
    with parse_budget(budget):
        policy.check_statement("allow", statement(1), "postgresql")
        with pytest.raises(PolicyViolation, match="fewer new statements"):
            for n in range(2, 6):
                policy.check_statement("allow", statement(n), "postgresql")
        policy.check_statement("allow", statement(1), "postgresql")  # parsed already: free
    with parse_budget(budget):  # the next request: the refused statement is judged afresh
        policy.check_statement("allow", statement(5), "postgresql")
