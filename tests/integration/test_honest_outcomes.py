"""Outcome records never say "did not commit" about a commit that committed,
and answer only the request that made them.

Real server processes on real databases.  The commit's answer is lost on the
way back (the relay drops it) and the server is killed and restarted before
the retry, so only the outcome table can answer: for every shape of write
that a first-keyword rule took for a read (a writing function called from a
SELECT, EXPLAIN ANALYZE, a data-modifying CTE, a locking read followed by a
write through a function, several statements in one text), the retried
answer must say "committed" exactly when the row is in the table.

Then the records' ownership: a token of another role with the same subject,
or the same key with another request body, gets 409 and runs nothing, from
memory and from the table; on MariaDB two servers on two databases of one
database server neither see nor purge each other's records.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from session_proxy.wire import protocol
from session_proxy_bench.relay import Relay
from session_proxy_server.outcomes import (
    Outcome,
    OutcomeConflict,
    OutcomeStore,
    outcome_table,
    replayable,
    upgrade_table,
)
from session_proxy_server.testing import ServerProcess, issue

TABLE = "sp_outcome_shapes"
TIMEOUT = 30

pytestmark = pytest.mark.server_faults


@dataclasses.dataclass(frozen=True)
class Shape:
    """A transaction whose write a first-keyword rule did not see."""

    name: str
    backends: tuple[str, ...]
    statements: tuple[str, ...]
    note: str


def _ins(note: str) -> str:
    return f"INSERT INTO {TABLE} (note) VALUES ('{note}')"


SHAPES = [
    Shape("plain insert", ("sqlite", "postgresql", "mysql"), (_ins("plain"),), "plain"),
    Shape("SELECT write_function()", ("postgresql", "mysql"),
          ("SELECT sp_enqueue('function')",), "function"),
    Shape("write function in WHERE", ("postgresql", "mysql"),
          ("SELECT 1 FROM (SELECT 1 AS one) AS x WHERE sp_enqueue('where') = 1",), "where"),
    Shape("comment, then SELECT write_function()", ("postgresql", "mysql"),
          ("/* harmless */ SELECT sp_enqueue('comment')",), "comment"),
    Shape("SELECT ... FOR\\nUPDATE, then a write by function", ("postgresql", "mysql"),
          (f"SELECT id FROM {TABLE} FOR\nUPDATE", "SELECT sp_enqueue('locked')"), "locked"),
    Shape("EXPLAIN ANALYZE INSERT", ("postgresql",),
          ("EXPLAIN ANALYZE " + _ins("explain analyze"),), "explain analyze"),
    Shape("EXPLAIN (ANALYZE, FORMAT JSON) INSERT", ("postgresql",),
          ("EXPLAIN (ANALYZE, FORMAT JSON) " + _ins("explain json"),), "explain json"),
    Shape("data-modifying CTE", ("postgresql",),
          (f"WITH w AS ({_ins('cte')} RETURNING id) SELECT id FROM w",), "cte"),
    Shape("SELECT from a view that calls a write function", ("postgresql", "mysql"),
          ("SELECT x FROM sp_enqueue_view",), "view"),
    Shape("several statements in one text", ("postgresql",),
          ("SELECT 1; " + _ins("multi"),), "multi"),
    Shape("CTE then INSERT", ("sqlite",),
          (f"WITH x AS (SELECT 'cte insert') INSERT INTO {TABLE} (note) SELECT * FROM x",),
           "cte insert"),
    Shape("REPLACE INTO", ("sqlite", "mysql"),
          (f"REPLACE INTO {TABLE} (note) VALUES ('replace')",), "replace"),
]

WRITE_FUNCTION = {
    "postgresql": [
        f"""CREATE OR REPLACE FUNCTION sp_enqueue(n text) RETURNS integer
            LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO {TABLE} (note) VALUES (n); RETURN 1; END $$""",
        "CREATE OR REPLACE VIEW sp_enqueue_view AS SELECT sp_enqueue('view') AS x",
    ],
    "mysql": [
        "DROP FUNCTION IF EXISTS sp_enqueue",
        f"""CREATE FUNCTION sp_enqueue(n VARCHAR(64)) RETURNS INT MODIFIES SQL DATA
            BEGIN INSERT INTO {TABLE} (note) VALUES (n); RETURN 1; END""",
        "CREATE OR REPLACE VIEW sp_enqueue_view AS SELECT sp_enqueue('view') AS x",
    ],
}


@pytest.fixture
def started() -> Iterator[list]:
    things: list = []
    yield things
    for thing in reversed(things):
        thing.stop()


@pytest.fixture
def direct(db_url: str, backend: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        if backend in ("postgresql", "mysql"):
            conn.execute(sa.text("DROP VIEW IF EXISTS sp_enqueue_view"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        key = {
            "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "postgresql": "SERIAL PRIMARY KEY",
        }.get(backend, "INTEGER PRIMARY KEY AUTO_INCREMENT")
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id {key}, note VARCHAR(64) NOT NULL)"))
        for statement in WRITE_FUNCTION.get(backend, []):
            conn.execute(sa.text(statement))
    yield engine
    with engine.begin() as conn:
        if backend in ("postgresql", "mysql"):
            conn.execute(sa.text("DROP VIEW IF EXISTS sp_enqueue_view"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
    engine.dispose()


def _post(url: str, token: str, txn: str | None, steps: list, key: str, attempt: int = 0,
          path: str = protocol.PIPELINE_PATH, body: dict | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", protocol.IDEMPOTENCY_KEY_HEADER: key}
    if attempt:
        headers[protocol.RETRY_ATTEMPT_HEADER] = str(attempt)
    return requests.post(url + path, json=body or protocol.pipeline_request(txn, steps),
                         headers=headers, timeout=TIMEOUT)


def _key() -> str:
    return secrets.token_urlsafe(18)


def _notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text(f"SELECT note FROM {TABLE}")).scalars())


def _execute(sql: str) -> dict:
    return {"op": "execute", "sql": sql, "params": None}


def test_a_lost_commit_answer_is_told_the_truth_after_a_restart(
    started, backend, db_url, direct
) -> None:
    server = ServerProcess(db_url, "--drain-seconds", "1")
    started.append(server)
    relay = Relay(server.port).start()
    started.append(relay)
    shapes = [shape for shape in SHAPES if backend in shape.backends]
    pending: list[tuple[Shape, str, str]] = []  # shape, txn, commit key
    refused: dict[str, str] = {}
    for shape in shapes:
        txn = None
        for sql in shape.statements:
            answer = _post(server.url, server.token, txn, [_execute(sql)], _key())
            if answer.status_code != 200:
                refused[shape.name] = answer.text
                if txn is not None:
                    _post(server.url, server.token, txn, [{"op": "rollback"}], _key())
                break
            txn = answer.json()["txn"]
        else:
            commit_key = _key()
            relay.inject("drop_response")  # the commit runs; its answer never arrives
            with pytest.raises(requests.RequestException):
                _post(relay.url, server.token, txn, [{"op": "commit"}], commit_key)
            pending.append((shape, txn, commit_key))
    assert relay.counts["drop_response"] == len(pending)
    # PostgreSQL runs every shape; psycopg sends several statements in one text.
    if backend != "sqlite":
        assert not refused, refused

    server.restart(kill=True)  # nothing of the first run's memory survives

    notes = _notes(direct)
    wrong = []
    for shape, txn, commit_key in pending:
        retried = _post(server.url, server.token, txn, [{"op": "commit"}], commit_key, 1)
        says_committed = retried.status_code == 200
        if says_committed != (shape.note in notes) or not says_committed:
            wrong.append((shape.name, retried.status_code, retried.text[:200], notes))
        if says_committed:
            assert retried.headers[protocol.REPLAYED_HEADER] == "true"
    assert not wrong, wrong
    assert sorted(shape.note for shape, _, _ in pending) == notes


# -- records belong to the request that made them ---------------------------------------


def _commit_write(note: str) -> list[dict]:
    return [_execute(_ins(note)), {"op": "commit"}]


def test_another_role_or_another_request_under_a_key_gets_409_and_runs_nothing(
    started, backend, db_url, direct
) -> None:
    server = ServerProcess(db_url, "--operations", "tests.operations_for_tests")
    started.append(server)
    admin = server.token  # subject test-client, role admin
    same_subject_other_role = issue("worker", "test-client")
    key = _key()
    first = _post(server.url, admin, None, _commit_write("admins"), key)
    assert first.status_code == 200, first.text

    def attempts() -> list[requests.Response]:
        return [
            # another role, the very same request, as a retry and as a first attempt
            _post(server.url, same_subject_other_role, None, _commit_write("admins"), key, 1),
            _post(server.url, same_subject_other_role, None, _commit_write("admins"), key),
            # the same role, another request under the same key
            _post(server.url, admin, None, _commit_write("forged"), key, 1),
            _post(server.url, admin, None, _commit_write("forged"), key),
        ]

    for restarted in (False, True):  # from memory, then from the table
        if restarted:
            server.restart(kill=True)
        for answer in attempts():
            assert answer.status_code == 409, (restarted, answer.text)
            assert answer.json()["error"]["code"] == protocol.IDEMPOTENCY_CONFLICT
            assert protocol.REPLAYED_HEADER not in answer.headers
            assert "admins" not in answer.text
        # The owner's own retry is still answered from the record.
        own = _post(server.url, admin, None, _commit_write("admins"), key, 1)
        assert own.status_code == 200 and own.headers[protocol.REPLAYED_HEADER] == "true"
    assert _notes(direct) == ["admins"]


def test_an_open_transactions_record_answers_only_the_same_request(
    started, db_url, direct
) -> None:
    server = ServerProcess(db_url)
    started.append(server)
    key = _key()
    opened = _post(server.url, server.token, None, [_execute(_ins("a"))], key)
    txn = opened.json()["txn"]
    same = _post(server.url, server.token, None, [_execute(_ins("a"))], key, 1)
    assert same.headers.get(protocol.REPLAYED_HEADER) == "true" and same.json()["txn"] == txn
    other = _post(server.url, server.token, None, [_execute(_ins("b"))], key, 1)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == protocol.IDEMPOTENCY_CONFLICT
    assert _post(server.url, server.token, txn, [{"op": "commit"}], _key()).ok
    assert _notes(direct) == ["a"]


def test_logical_call_records_answer_only_their_role_and_request(
    started, db_url, direct
) -> None:
    from tests import operations_for_tests

    operations_for_tests.Base.metadata.create_all(direct)
    with direct.begin() as conn:
        conn.execute(sa.text("DELETE FROM sp_logical_note"))
    server = ServerProcess(db_url, "--operations", "tests.operations_for_tests")
    started.append(server)
    path = protocol.OPERATIONS_PREFIX + "tests.operations_for_tests.add_note"
    body = protocol.operation_request([77], {"text": "admins"})
    key = _key()
    first = _post(server.url, server.token, None, [], key, path=path, body=body)
    assert first.status_code == 200, first.text
    for restarted in (False, True):
        if restarted:
            server.restart(kill=True)
        other_role = _post(server.url, issue("worker", "test-client"), None, [], key, 1,
                           path=path, body=body)
        other_body = _post(server.url, server.token, None, [], key, 1, path=path,
                           body=protocol.operation_request([78], {"text": "forged"}))
        for answer in (other_role, other_body):
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == protocol.IDEMPOTENCY_CONFLICT
        own = _post(server.url, server.token, None, [], key, 1, path=path, body=body)
        assert own.status_code == 200 and own.headers[protocol.REPLAYED_HEADER] == "true"
    with direct.connect() as conn:
        assert conn.execute(sa.text("SELECT id, text FROM sp_logical_note")).all() == [
            (77, "admins")
        ]


# -- the table: upgrade in place, scope per served database ---------------------------


def test_an_older_outcome_table_is_upgraded_and_its_rows_answer_no_one(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:  # the table as the previous release made it
        conn.execute(sa.text(
            "CREATE TABLE session_proxy_outcomes (subject VARCHAR(255) NOT NULL, "
            "idem_key VARCHAR(128) NOT NULL, created FLOAT NOT NULL, status INTEGER NOT NULL, "
            "body TEXT NOT NULL, PRIMARY KEY (subject, idem_key))"
        ))
        conn.execute(sa.text(
            "INSERT INTO session_proxy_outcomes VALUES ('w', :key, :now, 200, '{}')"
        ), {"key": "o" * 20, "now": time.time()})
    store = OutcomeStore(engine, window_seconds=60)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("session_proxy_outcomes")}
        assert {"scope", "role", "request_digest"} <= columns
        old = store.find("w", "o" * 20)
        assert old is not None and (old.role, old.digest) == ("", "")
        with pytest.raises(OutcomeConflict):
            replayable(old, "o" * 20, "admin", "d" * 64)
        raw = engine.raw_connection()
        try:
            store.record_on(raw.dbapi_connection, "w", "n" * 20, Outcome(200, b"{}", "r", "x"))
            raw.commit()
        finally:
            raw.close()
        new = store.find("w", "n" * 20)
        assert (new.role, new.digest) == ("r", "x") and new.answers("r", "x")
    finally:
        store.stop()
        engine.dispose()


def _second_database(url: str, suffix: str = "2") -> str:
    """Another database of this test's own on the same MariaDB server.

    Its name is the scope of its records, which no other running server
    serves, so no other server's purge (scoped to its own database) can
    touch them.
    """
    parsed = make_url(url)
    name = f"{parsed.database}_{suffix}"
    engine = sa.create_engine(parsed.set(database=parsed.database))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {name}"))
    engine.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def test_mysql_records_are_scoped_to_the_served_database(backend, db_url, started) -> None:
    if backend != "mysql":
        pytest.skip("the session_proxy database is server-wide on MySQL only")
    urls = [_second_database(db_url, "scope_a"), _second_database(db_url, "scope_b")]
    other_url = urls[1]
    engines = [sa.create_engine(url) for url in urls]
    stores = [OutcomeStore(engine, window_seconds=60) for engine in engines]
    try:
        assert stores[0].scope != stores[1].scope
        assert stores[0].table.schema == stores[1].table.schema == "session_proxy"  # shared
        key = _key()
        for store, engine, text in zip(stores, engines, (b'"one"', b'"two"'), strict=True):
            raw = engine.raw_connection()
            try:
                store.record_on(raw.dbapi_connection, "s", key, Outcome(200, text, "r", "d"))
                raw.commit()
            finally:
                raw.close()
        assert stores[0].find("s", key).body == b'"one"'
        assert stores[1].find("s", key).body == b'"two"'
        # Age both rows: each store purges its own database's only.
        table = stores[0].table
        with engines[0].begin() as conn:
            conn.execute(table.update().where(table.c.idem_key == key).values(created=1.0))
        def left() -> list[tuple[str]]:
            with engines[0].connect() as conn:
                return conn.execute(
                    sa.select(table.c.scope).where(table.c.idem_key == key)
                ).all()

        # Other rows of an older run may be aged out too: count ours only.
        assert stores[0].purge() >= 1
        assert left() == [(stores[1].scope,)]
        assert stores[1].purge() >= 1
        assert left() == []
    finally:
        for store, engine in zip(stores, engines, strict=True):
            store.stop()
            engine.dispose()

    # Two servers, one per database: a key of the first is unknown to the second.
    first = ServerProcess(db_url)
    second = ServerProcess(other_url)
    started.extend([first, second])
    for url in (db_url, other_url):
        with sa.create_engine(url).begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
            conn.execute(sa.text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY "
                                 "AUTO_INCREMENT, note VARCHAR(64) NOT NULL)"))
    key = _key()
    assert _post(first.url, first.token, None, _commit_write("first"), key).status_code == 200
    retried_elsewhere = _post(second.url, second.token, None, _commit_write("first"), key, 1)
    assert retried_elsewhere.status_code == 200
    assert protocol.REPLAYED_HEADER not in retried_elsewhere.headers  # it ran there, anew
    with sa.create_engine(other_url).begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {TABLE}"))


# -- the table: a record's time is exact enough for the window ------------------------


def _created_of(engine: sa.Engine, table: sa.Table, key: str) -> float:
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.created).where(table.c.idem_key == key)).scalar_one()


def test_a_record_keeps_its_time_to_the_millisecond(backend, db_url, tmp_path) -> None:
    """A 4-byte float (MySQL's FLOAT) holds today's time to 128 s only."""
    # On SQLite a store without the server's attached file would put its
    # table in the shared test database, where other tests must not see it.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}" if backend == "sqlite" else db_url)
    store = OutcomeStore(engine, window_seconds=60)
    try:
        key = _key()
        before = time.time()
        raw = engine.raw_connection()
        try:
            store.record_on(raw.dbapi_connection, "precision", key, Outcome(200, b"{}", "r", "d"))
            raw.commit()
        finally:
            raw.close()
        after = time.time()
        assert before - 0.001 <= _created_of(engine, store.table, key) <= after + 0.001
        assert store.find("precision", key) is not None
    finally:
        store.stop()
        engine.dispose()


def test_a_single_precision_created_column_is_widened_in_place(backend, db_url) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite keeps every REAL in 8 bytes whatever the declared type")
    engine = sa.create_engine(db_url)
    schema = f"{make_url(db_url).database}_widen" if backend == "mysql" else "sp_widen"
    create = "DATABASE" if backend == "mysql" else "SCHEMA"
    narrow = "FLOAT" if backend == "mysql" else "REAL"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE {create} IF NOT EXISTS {schema}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {schema}.session_proxy_outcomes"))
            conn.execute(sa.text(
                f"CREATE TABLE {schema}.session_proxy_outcomes (scope VARCHAR(64) NOT NULL, "
                "subject VARCHAR(255) NOT NULL, idem_key VARCHAR(128) NOT NULL, "
                "role VARCHAR(255) NOT NULL, request_digest VARCHAR(64) NOT NULL, "
                f"created {narrow} NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, "
                "PRIMARY KEY (scope, subject, idem_key))"
            ))
        table = outcome_table(sa.MetaData(), schema)
        assert upgrade_table(engine, table) == []  # no column was missing
        reflected = {c["name"]: c for c in sa.inspect(engine).get_columns(table.name, schema)}
        assert reflected["created"]["type"].compile(engine.dialect) == (
            table.c.created.type.compile(engine.dialect)
        )
        assert reflected["created"]["nullable"] is False
        now = time.time()
        with engine.begin() as conn:
            conn.execute(table.insert().values(
                scope="", subject="s", idem_key="k", role="", request_digest="",
                created=now, status=200, body="{}",
            ))
        assert abs(_created_of(engine, table, "k") - now) < 0.001
    finally:
        cascade = " CASCADE" if backend == "postgresql" else ""
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP {create} IF EXISTS {schema}{cascade}"))
        engine.dispose()
