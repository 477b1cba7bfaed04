"""The statement text guard: the server refuses SQL the database would read differently.

Three layers, all against real databases:

- the oracle: hypothesis builds UPDATE statements out of comment, quote and
  escape fragments; whatever the guard lets through runs on the real
  backend, and the rows it changed must be what the backend-aware lexer
  predicted (its fingerprint keeps or drops the WHERE clause); the
  dialect-neutral fingerprint the policy judges must agree with it;
- the guard's verdicts per backend on the known hostile forms (NUL, MySQL
  comment forms, charset switches, driver ``%`` directives, encodings);
- real server processes over HTTP: the PostgreSQL NUL attack from issue 14
  gets 400 and changes no row on every backend, deep nesting is refused
  quickly, and a role with no permissions is refused before any lexing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_proxy.wire import protocol
from session_proxy_server.sql import fingerprint as fingerprint_module
from session_proxy_server.sql.lexer import MAX_NESTING, lex
from session_proxy_server.sql.text_guard import UnsafeStatement, check_params, check_sql
from session_proxy_server.testing import issue
from tests.conftest import ServerProcess

TABLE = "sp_guard_t"
DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "sqlite": "pysqlite"}

# -- the oracle -------------------------------------------------------------------------

FRAGMENTS = [
    "--", "-- ", "--x", "--\t", "#", "/*", "*/", "/*!", "/*M!", "/*+", "'", "''", "\\",
    "\\'", '"', "`", "[", "]", "$$", "$a$", "\n", "\r", " ", "x", "E", "e'", "U&'",
    "N'", "@", "?", "%", "%%", "%s", "1", "WHERE id = 2",
]
LIVE_WHERE = f"UPDATE {TABLE} SET s = ? WHERE id = ?"
DEAD_WHERE = f"UPDATE {TABLE} SET s = ?"


def _prepare(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        conn.exec_driver_sql(f"CREATE TABLE {TABLE} (id INTEGER, s VARCHAR(200))")
        conn.exec_driver_sql(f"INSERT INTO {TABLE} (id, s) VALUES (1, 'a'), (2, 'b')")


def _changed(engine: sa.Engine, sql: str) -> int | None:
    """Rows ``sql`` changed (rolled back), or None when the database refused it."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql)
            cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE s <> 'a' AND s <> 'b'")
            return cursor.fetchone()[0]
        except Exception:  # noqa: BLE001 - any refusal by the database is fine
            return None
        finally:
            raw.rollback()
    finally:
        raw.close()


@pytest.fixture(scope="module")
def scratch(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    _prepare(engine)
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
    engine.dispose()


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    middle=st.lists(st.sampled_from(FRAGMENTS), max_size=6),
    tail=st.lists(st.sampled_from(FRAGMENTS), max_size=4),
)
def test_what_the_guard_lets_through_runs_as_the_lexer_read_it(
    scratch: sa.Engine, backend: str, middle: list[str], tail: list[str]
) -> None:
    sql = f"UPDATE {TABLE} SET s = 'x' {''.join(middle)} WHERE id = 1 {''.join(tail)}"
    try:
        check_sql(sql, 0, "execute", backend, DRIVERS[backend], has_params=False)
    except UnsafeStatement:
        return
    seen = fingerprint_module._fingerprint_uncached(sql, backend)
    changed = _changed(scratch, sql)
    if changed is not None:
        # The WHERE clause runs exactly when the backend's lexer saw it run.
        if seen == LIVE_WHERE:
            assert changed == 1, (sql, seen, changed)
        elif seen == DEAD_WHERE:
            assert changed == 2, (sql, seen, changed)
    # The policy judges this same reading.
    assert fingerprint_module.fingerprint(sql, backend) == seen


# -- the guard's verdicts per backend ---------------------------------------------------


def _verdict(sql: str, backend: str, has_params: bool = False) -> str | None:
    try:
        check_sql(sql, 0, "execute", backend, DRIVERS[backend], has_params)
    except UnsafeStatement as exc:
        return str(exc)
    return None


ALWAYS_REFUSED = [
    "UPDATE task SET state = 'x' -- \x00\nWHERE task.id = 1",
    "UPDATE task SET state = 'x' /* \x00 */ WHERE task.id = 1",
    "UPDATE task SET state = 'x\x00' WHERE task.id = 1",
    "UPDATE\x0btask SET state = 'x' WHERE task.id = 1",
    "UPDATE task SET state = 'x' --\x01\nWHERE task.id = 1",
    "UPDATE task SET state = '\udcbf' WHERE task.id = 1",
    "\ufeffUPDATE task SET state = 'x' WHERE task.id = 1",
    "UPDATE\u00a0task SET state = 'x' WHERE task.id = 1",
    "SELECT 'open",
    "SELECT 1 " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1),
]


@pytest.mark.parametrize("sql", ALWAYS_REFUSED)
@pytest.mark.parametrize("backend", ["postgresql", "mysql", "sqlite"])
def test_refused_on_every_backend(sql: str, backend: str) -> None:
    message = _verdict(sql, backend)
    assert message is not None and "step 0 (execute)" in message


PER_BACKEND = [
    # (sql, refused on postgresql, mysql, sqlite)
    ("UPDATE t SET s = 'x' /*! WHERE id = 1 */", False, True, False),
    ("UPDATE t SET s = 'x' /*!50000 WHERE id = 1 */", False, True, False),
    ("UPDATE t SET s = 'x' /*M! WHERE id = 1 */", False, True, False),
    ("UPDATE t SET s = 'x' --1\nWHERE id = 1", False, True, False),
    ("UPDATE t SET s = 'x' # c\nWHERE id = 1", False, False, True),
    ("UPDATE t SET s = 'x' /* /* */ WHERE id = 1 */", False, True, False),
    # The end depends on backslash escapes: a session setting on PostgreSQL and MySQL.
    ("UPDATE t SET s = 'x\\' WHERE id = 1 -- '", True, True, False),
    ("UPDATE t SET s = $$x$$ WHERE id = 1", False, True, True),
    ("UPDATE t SET s = @x WHERE id = 1", False, False, True),
    ("UPDATE t SET s = E'a\\'b' WHERE id = 1", False, True, True),
    ("UPDATE t SET s = 'x' /* unterminated", True, True, False),
    ("SET NAMES gbk", True, True, False),
    ("SET character_set_client = 'gbk'", True, True, False),
    ("SET @@session.character_set_client = gbk", True, True, True),
    ("SET CHARACTER SET gbk", True, True, False),
    ("SET client_encoding = 'SJIS'", True, True, False),
    ("SET STATEMENT character_set_client = gbk FOR SELECT 1", True, True, False),
]


@pytest.mark.parametrize(("sql", "pg", "my", "lite"), PER_BACKEND)
def test_refused_where_the_backend_reads_differently(
    sql: str, pg: bool, my: bool, lite: bool
) -> None:
    got = tuple(_verdict(sql, b) is not None for b in ("postgresql", "mysql", "sqlite"))
    assert got == (pg, my, lite), sql


@pytest.mark.parametrize(
    ("sql", "has_params", "refused"),
    [
        ("SELECT a FROM t WHERE b = %(b)s", True, False),
        ("SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'", True, False),
        ("SELECT a % 2 FROM t", False, False),
        ("SELECT a FROM t WHERE b = '%s'", True, True),  # pymysql puts a quoted value there
        ("SELECT a FROM t WHERE b = %s /* %(x)s */", True, True),
        ("SELECT a FROM t WHERE b = %r", True, True),  # pymysql: repr() of the escaped value
        ("SELECT a FROM t WHERE b = %d", True, True),
        ("SELECT a FROM t WHERE b = %b", True, True),  # psycopg: a binary placeholder
        ("SELECT a %(b)s FROM t", False, True),  # left as text without parameters
        ("SELECT a FROM t WHERE b LIKE 'x%%'", False, False),
    ],
)
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_driver_percent_directives(backend: str, sql: str, has_params: bool, refused: bool) -> None:
    assert (_verdict(sql, backend, has_params) is not None) == refused


def test_sqlalchemy_statements_pass() -> None:
    """What SQLAlchemy compiles for each backend is never refused."""
    meta = sa.MetaData()
    table = sa.Table(
        "task", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("state", sa.Text),
        sa.Column("größe", sa.Text),
    )
    statements = [
        sa.select(table).where(table.c.id.in_([1, 2]), table.c.state.like("x%")),
        table.update().where(table.c.id == 1).values(state="y"),
        table.insert().values(id=1, state="it's", größe="x"),
        sa.select(sa.func.count()).select_from(table).where(table.c.state.contains("%")),
    ]
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    for backend, dialect in (
        ("postgresql", postgresql.psycopg.dialect()),
        ("mysql", mysql.pymysql.dialect()),
        ("sqlite", sqlite.pysqlite.dialect()),
    ):
        for statement in statements:
            sql = str(statement.compile(dialect=dialect))
            assert _verdict(sql, backend, has_params=True) is None, (backend, sql)


def test_parameters_that_are_not_text_are_refused() -> None:
    steps = [{"op": "execute", "sql": "SELECT ?", "params": ["ok", ["\udcbf"]]}]
    with pytest.raises(UnsafeStatement, match="lone surrogate"):
        check_params(steps)
    check_params([{"op": "execute", "sql": "SELECT ?", "params": ["a\x00b", b"\x00"]}])


# -- linear cost --------------------------------------------------------------------------


def test_fingerprint_work_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Characters rendered per character of input stay bounded at the nesting limit."""
    rendered = [0]
    real = fingerprint_module._render

    def counting(elements: list) -> str:
        text = real(elements)
        rendered[0] += len(text)
        return text

    monkeypatch.setattr(fingerprint_module, "_render", counting)
    block = "(" * MAX_NESTING + "1" + ")" * MAX_NESTING
    ratios = []
    for copies in (10, 40):
        rendered[0] = 0
        sql = "SELECT " + " + ".join([block] * copies)
        fingerprint_module._fingerprint_uncached(sql)
        ratios.append(rendered[0] / len(sql))
    assert ratios[1] <= ratios[0] * 1.1
    assert ratios[1] < MAX_NESTING


def _cpu(work, text: str) -> float:
    """Least CPU time of three runs of ``work(text)``: the one least disturbed."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        work(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize(
    "unit, copies",
    [
        ("#", 100_000),
        ("[", 100_000),
        ("'\\' ", 25_000),
        ("-- \r", 25_000),
        ("/* ", 30_000),
        ("(1) + ", 16_000),
    ],
    ids=["hash", "bracket", "backslash-quotes", "cr-comments", "open-comments", "groups"],
)
def test_hostile_text_is_read_in_linear_time(unit: str, copies: int) -> None:
    """Four times the hostile text costs about four times the CPU, not sixteen.

    A ratio of two sizes measured side by side, not a time: the attack's
    quadratic scans took 12 s per request.
    """
    for work in (
        *(functools.partial(lex, dialect=dialect)
          for dialect in (None, "postgresql", "mysql", "sqlite")),
        fingerprint_module._fingerprint_uncached,
    ):
        small = _cpu(work, "SELECT 1 + " + unit * copies + "1")
        large = _cpu(work, "SELECT 1 + " + unit * (4 * copies) + "1")
        assert large < 8 * max(small, 1e-3), (work, small, large)


# -- real servers over HTTP ---------------------------------------------------------------


def _pipeline(proc: ServerProcess, sql: str, token: str | None = None, params=None):
    steps = [
        {"op": protocol.BEGIN},
        {"op": protocol.EXECUTE, "sql": sql, "params": params},
        {"op": protocol.COMMIT},
    ]
    headers = {"Authorization": f"Bearer {token or proc.token}"}
    return requests.post(
        proc.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(None, steps),
        headers=headers,
        timeout=60,
    )


def _states(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT id, s FROM {TABLE} ORDER BY id")]


def test_nul_in_a_comment_is_refused_and_changes_nothing(
    server: ServerProcess, scratch: sa.Engine
) -> None:
    """Issue 14: PostgreSQL ran only the text before the NUL and updated every row."""
    _prepare(scratch)
    for sql in (
        f"UPDATE {TABLE} SET s = 'x' -- \x00\nWHERE {TABLE}.id = 1",
        f"DELETE FROM {TABLE} -- \x00\nWHERE {TABLE}.id = 1",
        f"UPDATE {TABLE} SET s = 'x' /* \x00 */ WHERE {TABLE}.id = 1",
    ):
        response = _pipeline(server, sql)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "unsafe_statement"
        assert "NUL character" in error["message"] and error["refused_step"] == 1
    assert _states(scratch) == [(1, "a"), (2, "b")]
    # The same statement without the NUL runs (the guard is not the reason).
    ok = _pipeline(server, f"UPDATE {TABLE} SET s = 'x' -- c\nWHERE {TABLE}.id = 1")
    assert ok.status_code == 200, ok.text
    assert _states(scratch) == [(1, "x"), (2, "b")]
    _prepare(scratch)


def test_charset_switch_is_refused(server: ServerProcess, backend: str) -> None:
    sql = {"postgresql": "SET client_encoding = 'SJIS'", "mysql": "SET NAMES gbk"}.get(backend)
    if sql is None:
        pytest.skip("SQLite has no connection character set")
    response = _pipeline(server, sql)
    assert response.status_code == 400 and "character set" in response.json()["error"]["message"]


def test_deep_nesting_is_refused_quickly(server: ServerProcess) -> None:
    """586 KB of nested parentheses cost 12 s of server CPU per request before."""
    sql = "SELECT " + "(" * 293_000 + "1" + ")" * 293_000
    started = time.monotonic()
    for _ in range(2):
        response = _pipeline(server, sql)
        assert response.status_code == 400, response.text
        assert "nest deeper than" in response.json()["error"]["message"]
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def policy_server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path: Path = tmp_path_factory.mktemp("guard") / "policy.json"
    path.write_text(
        '{"version": 1, "roles": {"nobody": {}, "reader": {"tables": {"*": "read"}}}}'
    )
    with ServerProcess(db_url, "--policy", str(path)) as proc:
        yield proc


def test_role_without_permissions_is_refused_before_lexing(
    policy_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = "SELECT " + "(" * 293_000 + "1" + ")" * 293_000
    for role in ("nobody", "intruder"):
        response = _pipeline(policy_server, nested, token=issue(role, "host-9"))
        assert response.status_code == 403, response.text
        reason = response.json()["error"]["reason"]
        # Not "ambiguous" or a nesting refusal: nothing read the text.
        assert reason in ("no_permission", "unknown_role")
    # A role that may read is refused by the guard (400), the policy never lexes it.
    response = _pipeline(policy_server, nested, token=issue("reader", "host-9"))
    assert response.status_code == 400 and "nest deeper" in response.text


_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "sqlite": "pysqlite"}


@pytest.mark.parametrize("dialect", sorted(_DRIVERS))
@pytest.mark.parametrize("sql, refused", [
    # SQLAlchemy's own reflection suite comments a table with these: data.
    ("COMMENT ON TABLE t IS 'has\x0cescaped\x0bcomment'", False),
    ("SELECT\x0b1", True),
    ("SELECT 1 -- x\x0b\nWHERE 1 = 0", True),
    ("SELECT 'a\x0b' \x0c", True),
])
def test_control_characters_only_inside_string_literals(
    dialect: str, sql: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(UnsafeStatement, match="outside a string literal"):
            check_sql(sql, 0, "execute", dialect, _DRIVERS[dialect], False)
    else:
        check_sql(sql, 0, "execute", dialect, _DRIVERS[dialect], False)


@pytest.mark.parametrize("name", ["/slashes/", "more/slashes", "q?marks", "spaces in"])
def test_named_placeholders_may_hold_any_character_but_parentheses(name: str) -> None:
    """SQLAlchemy's difficult-parameter tests name binds like these."""
    for dialect in ("postgresql", "mysql"):
        check_sql(f"SELECT %({name})s", 0, "execute", dialect, _DRIVERS[dialect], True)
    with pytest.raises(UnsafeStatement):
        check_sql("SELECT %(a%r)s", 0, "execute", "mysql", "pymysql", True)
