"""MariaDB itself decides which texts change the active role; the guard must refuse each one.

``COM_RESET_CONNECTION`` keeps the role a client set with ``SET ROLE`` (MariaDB
10.11), so the next client of the pooled connection would run with it.  The
session guard refuses ``SET ROLE`` on MySQL.  The oracle is the database:
every generated text runs directly on MariaDB (not through the proxy) with
no role active, and whenever ``CURRENT_ROLE()`` changed afterwards, the
guard must have refused that text.  Texts that only assign a column named
``role`` must stay allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_proxy_server.sql.session_guard import IsolationViolation, check_sql

pymysql = pytest.importorskip("pymysql")
pytestmark = pytest.mark.mysql

ROLE = "sp_guard_role"
MYSQL_URL = os.environ.get("SESSION_PROXY_TEST_MYSQL_URL",
                           "mysql+pymysql://root@127.0.0.1:3306/test")


def _refused(sql: str) -> bool:
    try:
        check_sql(sql, "mysql")
    except IsolationViolation as exc:
        assert exc.reason == "session_state", (sql, exc.reason)
        return True
    return False


@pytest.fixture(scope="module")
def cursor() -> Iterator[Any]:
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_URL)
    try:
        connection = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306,
                                     user=url.username or "root", password=url.password or "",
                                     database=url.database, autocommit=True)
    except pymysql.err.OperationalError as exc:
        pytest.skip(f"no MySQL/MariaDB server: {exc}")
    cur = connection.cursor()
    cur.execute(f"CREATE ROLE IF NOT EXISTS {ROLE}")
    cur.execute(f"GRANT {ROLE} TO CURRENT_USER")
    cur.execute("DROP TABLE IF EXISTS sp_guard_roles")
    cur.execute("CREATE TABLE sp_guard_roles (id INT PRIMARY KEY, role INT)")
    cur.execute("INSERT INTO sp_guard_roles VALUES (1, 0)")
    yield cur
    cur.execute("SET ROLE NONE")
    cur.execute("DROP TABLE IF EXISTS sp_guard_roles")
    cur.execute("DROP PROCEDURE IF EXISTS sp_guard_proc")
    cur.execute(f"DROP ROLE IF EXISTS {ROLE}")
    connection.close()


def _role_after(cursor: Any, sql: str) -> str | None:
    """Run ``sql`` with no role active; the active role afterwards (None if none)."""
    cursor.execute("SET ROLE NONE")
    try:
        cursor.execute(sql)
        if sql.upper().startswith("CREATE PROCEDURE"):
            cursor.execute("CALL sp_guard_proc()")
    except pymysql.err.MySQLError:
        pass
    finally:
        cursor.execute("DROP PROCEDURE IF EXISTS sp_guard_proc")
    cursor.execute("SELECT CURRENT_ROLE()")
    return cursor.fetchone()[0]


GAPS = st.sampled_from([" ", "  ", "\t", "\n", " /* c */ ", "/**/", " -- c\n", " # c\n"])


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.upper(), word.lower(), word.capitalize()])


@st.composite
def role_texts(draw: st.DrawFn) -> str:
    """A text that may or may not set a role, as a client could spell it."""
    name = draw(st.sampled_from([ROLE, f"`{ROLE}`", f"'{ROLE}'", f'"{ROLE}"', "NONE"]))
    core = (draw(_cased("set")) + draw(GAPS) + draw(st.sampled_from(["", "DEFAULT "]))
            + draw(_cased("role")) + draw(st.sampled_from([" ", "", " = ", "=", "\n"])) + name)
    if "DEFAULT" in core:
        core += f" FOR {draw(st.sampled_from(['CURRENT_USER', 'root']))}"
    shape = draw(st.sampled_from(["plain", "statement", "procedure", "after_select"]))
    if shape == "statement":
        return f"SET STATEMENT max_statement_time=10 FOR {core}"
    if shape == "procedure":
        return f"CREATE PROCEDURE sp_guard_proc(){draw(GAPS)}{core}"
    if shape == "after_select":
        return f"SELECT 1;{draw(GAPS)}{core}"
    return core


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=role_texts())
def test_every_text_that_sets_a_role_is_refused(cursor: Any, sql: str) -> None:
    if sql.startswith("SELECT 1;"):
        # pymysql sends one statement per call: run the role part as MariaDB would.
        changed = _role_after(cursor, sql.split(";", 1)[1])
    else:
        changed = _role_after(cursor, sql)
    if changed is not None:
        assert _refused(sql), f"{sql!r} set role {changed!r} and the guard let it through"


@pytest.mark.parametrize("sql", [
    "UPDATE sp_guard_roles SET role = 1 WHERE id = 1",
    "UPDATE sp_guard_roles SET role=2",
    "UPDATE sp_guard_roles SET id = 1, role = 3",
    "INSERT INTO sp_guard_roles (id, role) VALUES (2, 1) ON DUPLICATE KEY UPDATE role = 4",
])
def test_a_column_named_role_may_still_be_assigned(cursor: Any, sql: str) -> None:
    assert _role_after(cursor, sql) is None
    assert not _refused(sql)
