"""Session state one client leaves on a pooled server connection never reaches another.

Every test runs a real server with one pooled connection (``--max-transactions
1`` sizes the pool), so the second client's transaction necessarily runs on
the connection the first client used; on PostgreSQL and MySQL the tests also
check the backend's connection id to prove it.  The first client creates or
changes every kind of session state it can; the second sees none of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import session_proxy
from session_proxy_server.testing import issue
from tests.conftest import ServerProcess


class _Base(DeclarativeBase):
    pass


class Secret(_Base):
    __tablename__ = "sp_reset_secret"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(40))
    value: Mapped[str] = mapped_column(sa.String(40))


class Loot(_Base):
    __tablename__ = "sp_reset_loot"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    value: Mapped[str] = mapped_column(sa.String(40))


@pytest.fixture(scope="module")
def tables(db_url: str) -> Iterator[None]:
    engine = sa.create_engine(db_url)
    _Base.metadata.drop_all(engine)
    _Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Secret(id=i, owner="victim", value=f"real-{i}") for i in range(1, 4)])
        session.commit()
    yield
    _Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def one_connection_server(db_url: str, tables: None) -> Iterator[ServerProcess]:
    server = ServerProcess(db_url, "--max-transactions", "1", "--statement-timeout", "7")
    yield server
    server.stop()


@pytest.fixture
def clients(one_connection_server: ServerProcess) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """An attacker's and a victim's engine: two subjects, same role, no policy."""
    url = one_connection_server.url
    attacker = session_proxy.create_engine(url, token=issue("worker", "attacker"))
    victim = session_proxy.create_engine(url, token=issue("worker", "victim"))
    # Both engines have connected once (their dialects' first-connect queries ran).
    for engine in (attacker, victim):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.commit()
    yield attacker, victim
    attacker.dispose()
    victim.dispose()


def _reset_in_place(server: ServerProcess) -> None:
    """The reset cleared the connection itself, not by discarding it."""
    assert "could not reset" not in server.log_path.read_text()


def _refused(conn: sa.Connection, sql: str, reason: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError) as caught:
        conn.exec_driver_sql(sql)
    assert caught.value.orig.reason == reason, caught.value
    assert "refused" in str(caught.value)
    conn.rollback()


# -- PostgreSQL ---------------------------------------------------------------------------


def test_postgresql_prepared_statement_hijack(
    clients: tuple[sa.Engine, sa.Engine], backend: str
) -> None:
    """Issue 14: PREPARE _pg3_N made another client's session.get return forged rows."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL prepared statements")
    attacker, victim = clients
    for _ in range(8):  # often enough for psycopg's auto-prepare (threshold 5)
        with Session(victim) as session:
            assert session.get(Secret, 1).value == "real-1"
            session.commit()
    with attacker.connect() as conn:
        # The driver no longer names statements on the pooled connection ...
        assert conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").all() == []
        # ... and a client may not name any.
        _refused(conn, "PREPARE _pg3_0 (smallint) AS SELECT $1::int, 'x', 'FORGED'",
                 "prepared_statement")
        _refused(conn, "DEALLOCATE ALL", "prepared_statement")
        # Nor through dynamic SQL in a DO block, which the guard cannot read
        # (the reset, DISCARD ALL, would drop such a statement all the same).
        _refused(conn, "DO $$ BEGIN EXECUTE 'PREPARE _pg3_0 (smallint) AS "
                 "SELECT $1::int, ''attacker''::varchar, ''FORGED''::varchar'; END $$",
                 "dynamic_sql")
    forged = 0
    for _ in range(30):
        with Session(victim) as session:
            forged += session.get(Secret, 2).value != "real-2"
            session.commit()
    assert forged == 0
    with victim.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar() == 0


def test_postgresql_session_state_does_not_leak(
    clients: tuple[sa.Engine, sa.Engine], backend: str, db_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL session state")
    attacker, victim = clients
    direct = sa.create_engine(db_url)
    with direct.begin() as conn:
        conn.exec_driver_sql(
            "DO $$ BEGIN CREATE ROLE sp_reset_other; EXCEPTION WHEN duplicate_object THEN "
            "NULL; END $$"
        )
        conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS sp_reset_seq")
        # So the attacker's commit can still record its outcome as that role.
        conn.exec_driver_sql("GRANT USAGE ON SCHEMA session_proxy TO sp_reset_other")
        conn.exec_driver_sql(
            "GRANT SELECT, INSERT ON session_proxy.session_proxy_outcomes TO sp_reset_other"
        )
    direct.dispose()
    with victim.connect() as conn:
        defaults = conn.exec_driver_sql(
            "SELECT current_setting('search_path'), current_setting('application_name'), "
            "current_user"
        ).one()
        conn.commit()
    planted = [
        "SET search_path TO somewhere_else, public",
        "SET statement_timeout = 0",
        "SET application_name = 'attacker'",
        "SET myapp.secret = 'planted'",
        "SET default_transaction_read_only = on",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "CREATE TEMP TABLE leaked (x int)",
        "CREATE TEMP VIEW sp_reset_secret AS SELECT 1 AS id, 'x' AS owner, 'FORGED' AS value",
        "CREATE FUNCTION pg_temp.leaked_fn() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "SELECT pg_advisory_lock(4242)",
        "LISTEN leaked_channel",
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
        "SELECT nextval('sp_reset_seq')",
        "SET SESSION AUTHORIZATION sp_reset_other",
    ]
    with attacker.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        for sql in planted:
            conn.exec_driver_sql(sql)
        assert conn.exec_driver_sql("SELECT current_user").scalar() == "sp_reset_other"
        conn.commit()
    with attacker.connect() as conn:  # DISCARD ALL keeps random()'s seed: refused
        _refused(conn, "SELECT setseed(0.5)", "session_state")
        _refused(conn, "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SELECT SETSEED(0.5)'",
                 "session_state")
    with victim.connect() as conn:  # necessarily the same server connection
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == pid
        assert conn.exec_driver_sql(
            "SELECT current_setting('search_path'), current_setting('application_name'), "
            "current_user"
        ).one() == defaults
        state = conn.exec_driver_sql(
            "SELECT current_setting('statement_timeout'), "
            "coalesce(current_setting('myapp.secret', true), ''), "
            "current_setting('default_transaction_read_only'), "
            "current_setting('default_transaction_isolation'), "
            "(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()), "
            "(SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema()), "
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            " AND pid = pg_backend_pid()), "
            "(SELECT count(*) FROM pg_listening_channels()), "
            # WITH HOLD cursors only: the victim's own queries run through
            # non-holdable server-side cursors (server.cursors).
            "(SELECT count(*) FROM pg_cursors WHERE is_holdable), "
            "(SELECT count(*) FROM pg_prepared_statements)"
        ).one()
        assert state == ("7s", "", "off", "read committed", 0, 0, 0, 0, 0, 0)
        assert conn.execute(sa.select(Secret.value).where(Secret.id == 1)).scalar() == "real-1"
        with pytest.raises(sa.exc.OperationalError, match="not yet defined"):
            conn.exec_driver_sql("SELECT currval('sp_reset_seq')")
        conn.rollback()


def test_postgresql_state_a_plain_select_hides_is_still_reset(
    clients: tuple[sa.Engine, sa.Engine], backend: str, db_url: str,
    one_connection_server: ServerProcess,
) -> None:
    """A SELECT whose text is plain, through a view calling set_config and
    pg_advisory_lock: the reset in the commit's round trip clears both,
    as it does for every committed transaction (no reset of its own)."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL session state")
    attacker, victim = clients
    direct = sa.create_engine(db_url)
    with direct.begin() as conn:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION sp_reset_taint() RETURNS int LANGUAGE sql AS "
            "$$ SELECT (set_config('search_path', 'somewhere_else, public', false) IS NOT NULL"
            "  AND pg_advisory_lock(4343) IS NOT NULL)::int $$"
        )
        conn.exec_driver_sql(
            "CREATE OR REPLACE VIEW sp_reset_tainted AS SELECT sp_reset_taint() AS x"
        )
    try:
        with_commit = one_connection_server.metric(
            "session_proxy_session_resets_with_commit_total"
        )
        resets = one_connection_server.metric("session_proxy_session_resets_total")
        with victim.connect() as conn:
            defaults = conn.exec_driver_sql("SELECT current_setting('search_path')").scalar()
            conn.commit()
        with attacker.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM sp_reset_tainted").scalar() == 1
            conn.commit()
        with victim.connect() as conn:
            path = conn.exec_driver_sql("SELECT current_setting('search_path')").scalar()
            assert path == defaults
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()"
            ).scalar() == 0
            conn.commit()
        # Three commits, each resetting in its own round trip; no reset apart.
        assert one_connection_server.metric("session_proxy_session_resets_total") == resets
        assert one_connection_server.metric(
            "session_proxy_session_resets_with_commit_total"
        ) == with_commit + 3
    finally:
        with direct.begin() as conn:
            conn.exec_driver_sql("DROP VIEW IF EXISTS sp_reset_tainted")
            conn.exec_driver_sql("DROP FUNCTION IF EXISTS sp_reset_taint()")
        direct.dispose()


# -- MySQL / MariaDB ---------------------------------------------------------------------


@pytest.fixture(params=["mysql+pymysql", "mariadb+pymysql"])
def mysql_url_form(request: pytest.FixtureRequest, backend: str, db_url: str,
                   tables: None) -> Iterator[ServerProcess]:
    """A one-connection server for each URL form of the MySQL backend."""
    if backend != "mysql":
        pytest.skip("MySQL session state")
    url = make_url(db_url).set(drivername=request.param)
    server = ServerProcess(url.render_as_string(hide_password=False),
                           "--max-transactions", "1", "--statement-timeout", "7")
    yield server
    server.stop()


def test_mysql_session_state_does_not_leak(mysql_url_form: ServerProcess, db_url: str) -> None:
    """COM_RESET_CONNECTION between leases, then the server's own settings again."""
    server = mysql_url_form
    attacker = session_proxy.create_engine(server.url, token=issue("worker", "attacker"))
    victim = session_proxy.create_engine(server.url, token=issue("worker", "victim"))
    state = (
        "SELECT @@session.sql_mode, @@session.max_statement_time, @var, @@autocommit, "
        "@@character_set_client, @@session.tx_read_only, "
        "IS_USED_LOCK('sp_reset_lock') IS NOT NULL"
    )
    try:
        with victim.connect() as conn:
            default_mode = conn.exec_driver_sql("SELECT @@session.sql_mode").scalar_one()
            conn.commit()
        with attacker.connect() as conn:  # each refusal ends its transaction
            _refused(conn, "PREPARE s FROM 'SELECT 1'", "prepared_statement")
            _refused(conn, "SET GLOBAL sql_mode = ''", "server_default")
            # COM_RESET_CONNECTION keeps the active role (red-team finding): refused.
            _refused(conn, "SET ROLE sp_reset_role", "session_state")
            _refused(conn, "CREATE PROCEDURE sp_reset_p() SET ROLE sp_reset_role",
                     "session_state")
        with attacker.connect() as conn:  # the statement text guard refuses charset changes
            with pytest.raises(sa.exc.ProgrammingError, match="unsafe_statement"):
                conn.exec_driver_sql("SET NAMES latin1")
        with attacker.connect() as conn:
            connection_id = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
            conn.exec_driver_sql("SET SESSION max_statement_time = 0")
            conn.exec_driver_sql("SET @var = 'left behind'")
            conn.exec_driver_sql("CREATE TEMPORARY TABLE leaked (x int)")
            conn.exec_driver_sql(
                "CREATE TEMPORARY TABLE sp_reset_secret (id int, owner text, value text)"
            )
            conn.exec_driver_sql("INSERT INTO sp_reset_secret VALUES (1, 'x', 'FORGED')")
            assert conn.exec_driver_sql("SELECT GET_LOCK('sp_reset_lock', 0)").scalar() == 1
            conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")  # the next ones
            assert conn.exec_driver_sql(state).one() == (
                "", 0.0, "left behind", 0, "utf8mb4", 1, 1
            )
            conn.commit()
        with victim.connect() as conn:  # necessarily the same server connection
            assert conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar() == connection_id
            assert conn.exec_driver_sql(state).one() == (
                default_mode, 7.0, None, 0, "utf8mb4", 0, 0
            )
            with pytest.raises(sa.exc.ProgrammingError, match="leaked"):
                conn.exec_driver_sql("SELECT * FROM leaked")
            conn.rollback()
            assert conn.execute(sa.select(Secret.value).where(Secret.id == 1)).scalar() == (
                "real-1"
            )
            conn.rollback()
        # Autocommit stayed off: a rolled-back insert leaves nothing.
        with victim.connect() as conn:
            conn.execute(sa.insert(Loot).values(value="rolled back"))
            conn.rollback()
            assert conn.execute(sa.select(sa.func.count()).select_from(Loot)).scalar() == 0
        _reset_in_place(server)
    finally:
        attacker.dispose()
        victim.dispose()


# -- SQLite -------------------------------------------------------------------------------


def test_sqlite_session_state_does_not_leak(
    clients: tuple[sa.Engine, sa.Engine], backend: str, one_connection_server: ServerProcess
) -> None:
    """Issue 14: a temp trigger copied another tenant's writes; query_only broke writers."""
    if backend != "sqlite":
        pytest.skip("SQLite session state")
    attacker, victim = clients
    pragmas = ("foreign_keys", "query_only", "recursive_triggers", "busy_timeout",
               "reverse_unordered_selects", "ignore_check_constraints")
    read_pragmas = "SELECT " + ", ".join(f"(SELECT * FROM pragma_{name})" for name in pragmas)
    with victim.connect() as conn:
        defaults = conn.exec_driver_sql(read_pragmas).one()
        conn.commit()
    with attacker.connect() as conn:  # each refusal ends its transaction
        _refused(conn, "ATTACH DATABASE 'sp_reset_attached.db' AS evil", "attach")
        _refused(conn, "PRAGMA writable_schema = 1", "pragma")
        _refused(conn, "PRAGMA locking_mode = EXCLUSIVE", "pragma")
        _refused(conn, "PRAGMA case_sensitive_like = 1", "pragma")
    with attacker.connect() as conn:
        conn.exec_driver_sql(
            "CREATE TEMP TRIGGER copy_secret AFTER UPDATE ON main.sp_reset_secret BEGIN "
            "INSERT INTO sp_reset_loot (value) VALUES (NEW.value); END"
        )
        conn.exec_driver_sql("CREATE TEMP TABLE leaked (x int)")
        conn.exec_driver_sql("CREATE INDEX temp.leaked_x ON leaked (x)")
        conn.exec_driver_sql(
            "CREATE TEMP VIEW sp_reset_secret AS SELECT 1 AS id, 'x' AS owner, 'FORGED' AS value"
        )
        for sql in ("PRAGMA foreign_keys = ON", "PRAGMA recursive_triggers = 1",
                    "PRAGMA busy_timeout = 1", "PRAGMA reverse_unordered_selects = 1",
                    "PRAGMA main.ignore_check_constraints = 1"):
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql("PRAGMA query_only = 1")
        assert conn.exec_driver_sql(read_pragmas).one() == (1, 1, 1, 1, 1, 1)
        assert conn.exec_driver_sql("SELECT count(*) FROM temp.sqlite_master").scalar() == 4
        conn.commit()
    with victim.connect() as conn:  # the only pooled connection
        assert conn.exec_driver_sql(read_pragmas).one() == defaults
        assert conn.exec_driver_sql("SELECT count(*) FROM temp.sqlite_master").scalar() == 0
        attached = {row[1] for row in conn.exec_driver_sql("PRAGMA database_list")}
        # The server's own outcome database is attached on every connection.
        assert attached <= {"main", "temp", "session_proxy"}
        assert conn.execute(sa.select(Secret.value).where(Secret.id == 1)).scalar() == "real-1"
        # Writes work (no query_only) and no trigger copies them anywhere.
        conn.execute(sa.update(Secret).where(Secret.id == 3).values(value="new-password"))
        conn.commit()
        assert conn.execute(sa.select(sa.func.count()).select_from(Loot)).scalar() == 0
        conn.commit()
    _reset_in_place(one_connection_server)


# -- the outcome table, on every backend ----------------------------------------------------


def test_outcome_table_is_refused_without_a_policy(
    clients: tuple[sa.Engine, sa.Engine], backend: str
) -> None:
    attacker, victim = clients
    with Session(victim) as session:  # a write, so its outcome is recorded
        session.add(Loot(value="victim's answer"))
        session.commit()
    qualified = "session_proxy_outcomes" if backend == "sqlite" else (
        "session_proxy.session_proxy_outcomes"
    )
    attempts = [
        f"SELECT * FROM {qualified}",
        f"DELETE FROM {qualified}",
        f"UPDATE {qualified} SET body = '{{}}'",
        f"INSERT INTO {qualified} (subject, idem_key, created, status, body) "
        "VALUES ('victim', 'k', 0, 200, '{}')",
        "SELECT 1 FROM loot WHERE EXISTS (SELECT 1 FROM Session_Proxy_Outcomes)",
        'SELECT * FROM "SESSION_PROXY_OUTCOMES"',
        "CREATE VIEW sp_reset_peek AS SELECT * FROM session_proxy_outcomes",
    ]
    if backend == "postgresql":
        attempts += [
            'SELECT * FROM U&"session\\005fproxy".session_proxy_outcomes',
            "SELECT count(*) FROM E'session\\137proxy.session\\137proxy\\137outcomes'::regclass",
            "SELECT database_to_xml(true, true, '')",
            "SELECT query_to_xml('select 1', true, true, '')",
            "DO $$ BEGIN EXECUTE 'DELETE FROM session_proxy.session_proxy_outcomes'; END $$",
        ]
    if backend == "mysql":
        attempts += [
            "SELECT * FROM `session_proxy`.`session_proxy_outcomes`",
            "SELECT 1 /*!, (SELECT count(*) FROM session_proxy.session_proxy_outcomes) */",
        ]
    with attacker.connect() as conn:
        for sql in attempts:
            with pytest.raises(sa.exc.ProgrammingError, match="refused"):
                conn.exec_driver_sql(sql)
            conn.rollback()


# -- held-out variants (red team, issue 14) ---------------------------------------------------


def test_mysql_default_database_does_not_leak(
    mysql_url_form: ServerProcess, db_url: str
) -> None:
    """``USE other`` survived COM_RESET_CONNECTION: the next client read the other database."""
    server = mysql_url_form
    direct = sa.create_engine(db_url)
    with direct.begin() as conn:
        conn.exec_driver_sql("CREATE DATABASE IF NOT EXISTS sp_reset_evil")
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS sp_reset_evil.sp_reset_secret "
            "(id int primary key, owner text, value text)"
        )
        conn.exec_driver_sql("REPLACE INTO sp_reset_evil.sp_reset_secret VALUES (1, 'x', 'FORGED')")
    attacker = session_proxy.create_engine(server.url, token=issue("worker", "attacker"))
    victim = session_proxy.create_engine(server.url, token=issue("worker", "victim"))
    try:
        with attacker.connect() as conn:
            _refused(conn, "USE sp_reset_evil", "default_database")
            _refused(conn, "use `sp_reset_evil`", "default_database")
        with victim.connect() as conn:
            served = make_url(db_url).database
            assert conn.exec_driver_sql("SELECT DATABASE()").scalar() == served
            assert conn.execute(sa.select(Secret.value).where(Secret.id == 1)).scalar() == (
                "real-1"
            )
            conn.rollback()
    finally:
        attacker.dispose()
        victim.dispose()
        with direct.begin() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS sp_reset_evil")
        direct.dispose()


def test_mysql_xa_transaction_cannot_outlive_its_lease(
    mysql_url_form: ServerProcess, db_url: str
) -> None:
    """XA PREPARE kept a transaction and its row locks after the lease ended."""
    server = mysql_url_form
    attacker = session_proxy.create_engine(server.url, token=issue("worker", "attacker"))
    direct = sa.create_engine(db_url)
    try:
        with attacker.connect() as conn:
            _refused(conn, "XA START 'sp_reset_xa'", "prepared_statement")
            _refused(conn, "xa recover", "prepared_statement")
        with attacker.connect() as conn:
            conn.exec_driver_sql("UPDATE sp_reset_secret SET value = 'locked' WHERE id = 1")
            _refused(conn, "XA PREPARE 'sp_reset_xa'", "prepared_statement")
        with direct.connect() as conn:
            assert conn.exec_driver_sql("XA RECOVER").all() == []
            conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 2")
            conn.exec_driver_sql("UPDATE sp_reset_secret SET value = 'real-1' WHERE id = 1")
            conn.commit()
    finally:
        attacker.dispose()
        with direct.connect() as conn:
            for row in conn.exec_driver_sql("XA RECOVER").all():
                conn.exec_driver_sql(f"XA ROLLBACK '{row[3].decode()}'")
        direct.dispose()


def test_sqlite_statement_cache_and_files_are_refused(
    clients: tuple[sa.Engine, sa.Engine], backend: str, tmp_path: object
) -> None:
    """sqlite_stmt showed another tenant's statement text; VACUUM INTO wrote a file."""
    if backend != "sqlite":
        pytest.skip("SQLite statement cache and files")
    attacker, victim = clients
    with victim.connect() as conn:
        conn.exec_driver_sql(
            "UPDATE sp_reset_secret SET value = 'hunter2-secret' WHERE id = 2"
        )
        conn.exec_driver_sql("UPDATE sp_reset_secret SET value = 'real-2' WHERE id = 2")
        conn.commit()
    target = f"{tmp_path}/copy.db"
    with attacker.connect() as conn:
        _refused(conn, "SELECT sql FROM sqlite_stmt", "session_table")
        _refused(conn, 'SELECT * FROM main."SQLITE_STMT"', "session_table")
        _refused(conn, f"VACUUM INTO '{target}'", "attach")
        _refused(conn, f"VACUUM main INTO '{target}'", "attach")
    import os

    assert not os.path.exists(target)
