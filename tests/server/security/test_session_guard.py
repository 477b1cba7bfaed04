"""The statements refused whatever the policy (server.sql.session_guard), without a server.

Property-based: however the outcome table or its schema is spelled (case,
quoting, escapes, qualification, position), the statement is refused; the
statements SQLAlchemy sends for ordinary work are not.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session_proxy_server.sql.policy import STARTUP_STATEMENTS
from session_proxy_server.sql.session_guard import RESET_PRAGMAS, IsolationViolation, check_sql

TABLE = "session_proxy_outcomes"
SCHEMA = "session_proxy"


def _reason(sql: str) -> str | None:
    try:
        check_sql(sql)
    except IsolationViolation as exc:
        return exc.reason
    return None


@st.composite
def spelled(draw: st.DrawFn, name: str) -> str:
    """``name`` as a client could spell it: any case, quoted or escaped."""
    cased = "".join(
        char.upper() if draw(st.booleans()) else char for char in name
    )
    style = draw(st.sampled_from(["bare", "double", "backtick", "bracket", "unicode"]))
    if style == "bare":
        return cased
    if style == "double":
        return f'"{cased}"'
    if style == "backtick":
        return f"`{cased}`"
    if style == "bracket":
        return f"[{cased}]"
    escaped = "".join(
        f"\\{ord(char):04x}" if draw(st.booleans()) else char for char in name
    )
    return f'U&"{escaped}"'


@st.composite
def naming_statements(draw: st.DrawFn) -> str:
    table = draw(spelled(TABLE))
    if draw(st.booleans()):
        table = f"{draw(spelled(SCHEMA))}.{table}"
    elif draw(st.booleans()):
        table = f"main.{table}"
    template = draw(st.sampled_from([
        "SELECT * FROM {t}",
        "SELECT a.x FROM app a JOIN {t} b ON a.id = b.id",
        "SELECT 1 FROM app WHERE EXISTS (SELECT 1 FROM {t})",
        "WITH c AS (SELECT * FROM {t}) SELECT * FROM c",
        "SELECT x FROM app UNION TABLE {t}",
        "SELECT * FROM app, LATERAL (TABLE {t}) AS l",
        "DELETE FROM {t}",
        "UPDATE {t} SET body = '{{}}'",
        "INSERT INTO {t} (subject) VALUES ('x')",
        "TRUNCATE {t}",
        "DROP TABLE {t}",
        "ALTER TABLE {t} RENAME TO x",
        "CREATE VIEW v AS SELECT * FROM {t}",
        "CREATE TRIGGER t AFTER INSERT ON {t} BEGIN SELECT 1; END",
        "SELECT 1; SELECT * FROM {t}",
        "SELECT /* c */ * FROM app -- x\n JOIN {t} ON true",
    ]))
    return template.format(t=table)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(naming_statements())
def test_every_spelling_of_the_outcome_table_is_refused(sql: str) -> None:
    assert _reason(sql) == "outcome_table", sql


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.sampled_from(["E'{s}'", "'{s}'", "$${s}$$", "$q${s}$q$"]),
       st.lists(st.booleans(), min_size=len(TABLE), max_size=len(TABLE)))
def test_names_in_string_literals_are_refused(quote: str, octal: list[bool]) -> None:
    """``'...'::regclass``, ``format()``, DO and function bodies turn strings into names."""
    text = "".join(
        f"\\{ord(char):03o}" if flag and quote.startswith("E") else char
        for char, flag in zip(TABLE, octal, strict=True)
    )
    sql = f"SELECT count(*) FROM {quote.format(s=SCHEMA + '.' + text)}::regclass"
    assert _reason(sql) == "outcome_table", sql


@pytest.mark.parametrize("sql, reason", [
    ("PREPARE _pg3_0 AS SELECT 1", "prepared_statement"),
    ("prepare s from @q", "prepared_statement"),
    ("EXECUTE s", "prepared_statement"),
    ("DEALLOCATE ALL", "prepared_statement"),
    ("DEALLOCATE PREPARE s", "prepared_statement"),
    ("DROP PREPARE s", "prepared_statement"),
    ("PREPARE TRANSACTION 'x'", "prepared_statement"),
    ("COMMIT PREPARED 'x'", "prepared_statement"),
    ("CREATE PROCEDURE p() BEGIN PREPARE s FROM @q; EXECUTE s; END", "prepared_statement"),
    ("SET GLOBAL sql_mode = ''", "server_default"),
    ("SET PERSIST max_connections = 1", "server_default"),
    ("SET @@GLOBAL.sql_mode = ''", "server_default"),
    ("SET sql_mode = '', GLOBAL max_connections = 1", "server_default"),
    ("CREATE PROCEDURE p() SET @@persist.max_connections = 1", "server_default"),
    ("ALTER SYSTEM SET work_mem = '1MB'", "server_default"),
    ("ALTER ROLE app SET search_path = evil", "server_default"),
    ("ALTER DATABASE app RESET ALL", "server_default"),
    ("LOAD 'auto_explain'", "server_default"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "attach"),
    ("VACUUM INTO '/tmp/x.db'", "attach"),
    ("vacuum main into ?", "attach"),
    ("SELECT sql FROM sqlite_stmt", "session_table"),
    ('SELECT * FROM main."SQLITE_DBPAGE"', "session_table"),
    ("USE otherdb", "default_database"),
    ("XA START 'x'", "prepared_statement"),
    ("XA PREPARE 'x'", "prepared_statement"),
    ("xa commit 'x'", "prepared_statement"),
    ("attach '/tmp/x.db' as x", "attach"),
    ("DETACH x", "attach"),
    ("PRAGMA writable_schema = 1", "pragma"),
    ("PRAGMA main.locking_mode = EXCLUSIVE", "pragma"),
    ("PRAGMA journal_mode = OFF", "pragma"),
    ("PRAGMA case_sensitive_like(1)", "pragma"),
    ("PRAGMA temp_store = MEMORY", "pragma"),
    ("SELECT database_to_xml(true, true, '')", "dynamic_sql"),
    ("SELECT pg_catalog.query_to_xml('SELECT 1', true, true, '')", "dynamic_sql"),
    ('SELECT "table_to_xml"(16384::regclass, true, true, \'\')', "dynamic_sql"),
    ("SELECT * FROM ts_stat('SELECT v FROM t')", "dynamic_sql"),
    ("SELECT * FROM dblink('', 'SELECT 1') AS t(x int)", "dynamic_sql"),
    ("SELECT U&'d!0061t' UESCAPE '!'", "dynamic_sql"),
    ("SELECT 1 /*!, 2 */", "hidden_code"),
    ("SELECT 1 /*M!100000 , 2 */", "hidden_code"),
    # Dynamic SQL in procedural code: the red team read and emptied the
    # outcome table with EXECUTE 'SELECT ... FROM ' || 'sess' || 'ion_proxy...'.
    ("DO $$ DECLARE r text; BEGIN EXECUTE 'SELECT 1' INTO r; END $$", "dynamic_sql"),
    ("do $body$ begin execute format('DELETE FROM %I', 'x'); end $body$", "dynamic_sql"),
    ("DO 'BEGIN EXECUTE ''SELECT 1''; END'", "dynamic_sql"),
    ("CREATE FUNCTION run(q text) RETURNS SETOF record LANGUAGE plpgsql "
     "AS $$ BEGIN RETURN QUERY EXECUTE q; END $$", "dynamic_sql"),
    ("CREATE OR REPLACE PROCEDURE p(q text) LANGUAGE plpgsql "
     "AS 'BEGIN EXECUTE q; END'", "dynamic_sql"),
    ("CREATE PROCEDURE red2_run(q TEXT) EXECUTE IMMEDIATE q", "dynamic_sql"),
    ("CREATE DEFINER = CURRENT_USER PROCEDURE p(q TEXT) BEGIN EXECUTE IMMEDIATE q; END",
     "dynamic_sql"),
    ("CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO EXECUTE IMMEDIATE 'SELECT 1'", "dynamic_sql"),
    ("EXECUTE IMMEDIATE CONCAT('SELECT 1 FROM session_', 'proxy.t')", "prepared_statement"),
])
def test_refused(sql: str, reason: str) -> None:
    assert _reason(sql) == reason


@pytest.mark.parametrize("sql", [
    *STARTUP_STATEMENTS,
    "SELECT task.id, task.state FROM task WHERE task.id = %(id_1)s::INTEGER",
    "INSERT INTO xcom (key, value) VALUES (?, ?)",
    "UPDATE task SET state = %s WHERE task.id = %s",
    "DELETE FROM log WHERE log.id IN (__[POSTCOMPILE_id_1])",
    "CREATE TEMP TABLE scratch (x int)",
    "SET search_path TO app, public",
    "SET SESSION sql_mode = ''",
    "SET statement_timeout = 0",
    "SELECT @@global.sql_mode, @@session.sql_mode",
    "SELECT pg_advisory_lock(1)",
    "LISTEN jobs",
    "PRAGMA main.table_info(\"task\")",
    "PRAGMA main.index_list('task')",
    "PRAGMA foreign_key_list(\"task\")",
    "PRAGMA journal_mode",
    "SELECT * FROM pragma_table_info('task')",
    "SELECT 'prepare' AS word, execute_count FROM stats",
    "SELECT session_id, proxy FROM sessions",
    "DO $$ BEGIN PERFORM pg_notify('jobs', 'x'); END $$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TRIGGER t AFTER INSERT ON task FOR EACH ROW EXECUTE FUNCTION audit()",
    "CREATE TRIGGER t AFTER INSERT ON task FOR EACH ROW EXECUTE PROCEDURE audit()",
    "CREATE PROCEDURE p() BEGIN UPDATE task SET state = 'x'; END",
    "SELECT 'execute' AS word FROM task",
    *(f"PRAGMA {name} = 1" for name in RESET_PRAGMAS),
])
def test_allowed(sql: str) -> None:
    assert _reason(sql) is None
