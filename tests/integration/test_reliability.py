"""Faults between client and server: nothing lost, nothing done twice.

Every test runs a real server process on a real database, with the fault
injecting relay (:mod:`session_proxy_bench.relay`) between the client and the server
where the network misbehaves, and checks the database afterwards through a
direct engine: exactly the acknowledged rows, no duplicate, no partial
transaction.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session

import session_proxy
from session_proxy import errors
from session_proxy.logical import RemoteClient
from session_proxy.retry import NO_RETRIES, RetryPolicy
from session_proxy.wire import protocol
from session_proxy_bench.relay import Relay
from session_proxy_server.testing import ServerProcess
from tests import operations_for_tests
from tests.conftest import REPO, wait_for

TABLE = "sp_reliability"
NOTES = "sp_logical_note"
TIMEOUT = 30

pytestmark = pytest.mark.server_faults

metadata = sa.MetaData()
entries = sa.Table(
    TABLE,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Not unique on purpose: a statement run twice shows up as two rows.
    sa.Column("note", sa.String(64), nullable=False),
)
FAST_RETRIES = RetryPolicy(attempts=6, first_delay=0.02, max_delay=0.2, deadline=20)


@pytest.fixture
def direct(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    operations_for_tests.Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {NOTES}"))
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def started() -> Iterator[list]:
    """Servers and relays started by a test, stopped after it."""
    things: list = []
    yield things
    for thing in reversed(things):
        thing.stop()


def start(started: list, db_url: str, *flags: str) -> tuple[ServerProcess, Relay]:
    server = ServerProcess(db_url, "--operations", "tests.operations_for_tests", *flags)
    started.append(server)
    relay = Relay(server.port).start()
    started.append(relay)
    return server, relay


def notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(entries.c.note)).scalars())


def metric(server: ServerProcess, name: str) -> float:
    text = requests.get(
        server.url + protocol.METRICS_PATH, headers=server.headers, timeout=TIMEOUT
    ).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


# -- lost responses are retried, and nothing runs twice --------------------------------


def test_lost_commit_response_is_answered_from_the_record(started, db_url, direct) -> None:
    server, relay = start(started, db_url)
    engine = session_proxy.create_engine(relay.url, token=server.token, retry=FAST_RETRIES)
    with Session(engine) as session:
        session.execute(entries.insert().values(note="first"))
        session.flush()
        relay.inject("drop_response")  # the commit reaches the server; its answer is lost
        session.commit()
    assert relay.counts["drop_response"] == 1
    stats = session_proxy.stats(engine)
    assert stats.retries == 1 and stats.replays == 1
    assert notes(direct) == ["first"]
    assert metric(server, "session_proxy_replayed_total") == 1
    engine.dispose()


def test_lost_statement_response_inside_a_transaction_is_not_run_twice(
    started, db_url, direct
) -> None:
    server, relay = start(started, db_url)
    engine = session_proxy.create_engine(relay.url, token=server.token, retry=FAST_RETRIES)
    with engine.connect() as conn:
        conn.execute(entries.insert().values(note="a"))
        relay.inject("drop_response")
        result = conn.execute(entries.insert().values(note="b"))
        assert result.rowcount == 1
        relay.inject("reset")  # this one never reaches the server
        conn.execute(entries.insert().values(note="c"))
        conn.commit()
    assert notes(direct) == ["a", "b", "c"]
    assert session_proxy.stats(engine).replays == 1
    assert session_proxy.stats(engine).retries == 2
    engine.dispose()


def test_lost_answer_to_an_opening_read_leaves_no_orphan_lease(started, db_url, direct) -> None:
    server, relay = start(started, db_url)
    engine = session_proxy.create_engine(relay.url, token=server.token, retry=FAST_RETRIES)
    with engine.connect() as conn:
        relay.inject("drop_response")
        assert conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar() == 0
        # The retry found the lease its first attempt opened: one lease, not two.
        assert metric(server, "session_proxy_open_transactions") == 1
        conn.rollback()
    wait_for(lambda: metric(server, "session_proxy_open_transactions") == 0)
    engine.dispose()


def test_without_retries_a_lost_response_is_an_error_and_the_transaction_rolls_back(
    started, db_url, direct
) -> None:
    server, relay = start(started, db_url)
    engine = session_proxy.create_engine(relay.url, token=server.token, retry=NO_RETRIES)
    with engine.connect() as conn:
        conn.execute(entries.insert().values(note="kept out"))
        relay.inject("drop_response")
        with pytest.raises(sa.exc.OperationalError) as info:
            conn.execute(entries.insert().values(note="ran, answer lost"))
        assert isinstance(info.value.orig, errors.ServerUnreachable)
        conn.rollback()
    assert notes(direct) == []
    wait_for(lambda: metric(server, "session_proxy_open_transactions") == 0)
    engine.dispose()


def test_lost_logical_call_response_is_answered_from_the_record(started, db_url, direct) -> None:
    server, relay = start(started, db_url)
    client = RemoteClient(relay.url, token=server.token, retry=FAST_RETRIES)
    relay.inject("drop_response")
    note = client.call("tests.operations_for_tests.add_note", (41,), {"text": "once"})
    # A second run would have raised IntegrityError on the note's primary key.
    assert (note.id, note.text) == (41, "once")
    assert client.stats.replays == 1
    with direct.connect() as conn:
        assert conn.execute(sa.text(f"SELECT id, text FROM {NOTES}")).all() == [(41, "once")]
    client.close()


def test_busy_server_is_retried_until_a_slot_frees(started, db_url, direct) -> None:
    server, _ = start(started, db_url, "--max-transactions", "1")
    holder = session_proxy.create_engine(server.url, token=server.token)
    waiter = session_proxy.create_engine(server.url, token=server.token, retry=FAST_RETRIES)
    with holder.connect() as held:
        held.execute(entries.insert().values(note="holder"))
        timer = threading.Timer(0.3, held.commit)
        timer.start()
        with waiter.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar() == 1
            conn.rollback()
        timer.join()
    assert session_proxy.stats(waiter).retries >= 1
    holder.dispose()
    waiter.dispose()


# -- the protocol underneath: keys, records, restarts ----------------------------------


def _post(url: str, headers: dict, txn: str | None, steps: list, key: str, attempt: int = 0):
    headers = {**headers, protocol.IDEMPOTENCY_KEY_HEADER: key}
    if attempt:
        headers[protocol.RETRY_ATTEMPT_HEADER] = str(attempt)
    return requests.post(
        url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(txn, steps),
        headers=headers,
        timeout=TIMEOUT,
    )


RUN = secrets.token_hex(4)


def key(letter: str) -> str:
    """A key unique to this test run (outcomes outlive a run in the database)."""
    return f"{letter * 12}-{RUN}"


def _insert(note: str) -> dict:
    return {
        "op": "execute",
        "sql": f"INSERT INTO {TABLE} (note) VALUES ('{note}')",
        "params": None,
    }


def test_commit_outcome_survives_a_server_restart(started, db_url, direct) -> None:
    """The commit's answer is lost and the server restarts before the retry: the
    retry still learns that it committed; an unsent commit learns it did not."""
    server, _ = start(started, db_url, "--drain-seconds", "1")
    opened = _post(server.url, server.headers, None, [_insert("committed")], key("k"))
    txn = opened.json()["txn"]
    assert opened.json()["instance"]
    commit_key = secrets.token_urlsafe(18)
    assert _post(server.url, server.headers, txn, [{"op": "commit"}], commit_key).ok
    other = _post(server.url, server.headers, None, [_insert("never committed")], key("m"))
    other_txn = other.json()["txn"]

    server.restart()

    retried = _post(server.url, server.headers, txn, [{"op": "commit"}], commit_key, attempt=1)
    assert retried.status_code == 200, retried.text
    assert retried.headers[protocol.REPLAYED_HEADER] == "true"
    lost = _post(server.url, server.headers, other_txn, [{"op": "commit"}], key("n"), 1)
    assert lost.status_code == 404
    message = lost.json()["error"]["message"]
    assert "restarted" in message and "did not commit" in message
    assert notes(direct) == ["committed"]


def test_client_holding_a_transaction_across_a_restart_gets_transaction_lost(
    started, db_url, direct
) -> None:
    server, _ = start(started, db_url)
    engine = session_proxy.create_engine(server.url, token=server.token, retry=FAST_RETRIES)
    with Session(engine) as session:
        session.execute(entries.insert().values(note="before restart"))
        server.restart(kill=True)
        with pytest.raises(sa.exc.OperationalError) as info:
            session.commit()
        assert isinstance(info.value.orig, errors.TransactionLost)
        assert "restarted" in str(info.value.orig)
        session.rollback()
    assert notes(direct) == []
    engine.dispose()


def test_a_key_runs_once_even_when_repeated_after_later_requests(started, db_url, direct) -> None:
    server, _ = start(started, db_url)
    opened = _post(server.url, server.headers, None, [_insert("one")], key("a"))
    txn = opened.json()["txn"]
    assert _post(server.url, server.headers, txn, [_insert("two")], key("b")).ok
    # The answer to the latest request is kept; an older one is refused, unrun.
    again = _post(server.url, server.headers, txn, [_insert("two")], key("b"), 1)
    assert again.headers[protocol.REPLAYED_HEADER] == "true"
    # (A retry resends its request unchanged: the opening one had no txn.)
    stale = _post(server.url, server.headers, None, [_insert("one")], key("a"), 2)
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_request"
    assert _post(server.url, server.headers, txn, [{"op": "commit"}], key("c")).ok
    assert notes(direct) == ["one", "two"]


def test_bad_idempotency_key_is_refused_and_runs_nothing(started, db_url, direct) -> None:
    server, _ = start(started, db_url)
    response = _post(server.url, server.headers, None, [_insert("x")], "short")
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert notes(direct) == []


# -- abandoned work ----------------------------------------------------------------------

CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import sqlalchemy as sa
    import session_proxy
    engine = session_proxy.create_engine(sys.argv[1], token=sys.argv[2])
    conn = engine.connect()
    conn.execute(sa.text("UPDATE {table} SET note = 'killed client' WHERE id = 1"))
    print("locked", flush=True)
    time.sleep(600)
    """
)


def test_killed_client_releases_its_locks_when_the_lease_ends(started, db_url, direct) -> None:
    server, _ = start(started, db_url, "--lease-seconds", "2")
    with direct.begin() as conn:
        conn.execute(entries.insert().values(id=1, note="initial"))
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT.format(table=TABLE), server.url, server.token],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout.readline().strip() == "locked"
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        other = session_proxy.create_engine(server.url, token=server.token)
        with other.begin() as conn:
            # Waits on the dead client's row lock until its lease runs out.
            conn.execute(sa.text(f"UPDATE {TABLE} SET note = 'other client' WHERE id = 1"))
        other.dispose()
    finally:
        if client.poll() is None:
            client.kill()
        client.stdout.close()
    assert notes(direct) == ["other client"]
    assert metric(server, "session_proxy_lease_expiries_total") == 1


def test_graceful_shutdown_finishes_work_in_flight_and_rolls_back_the_rest(
    started, db_url, direct, backend
) -> None:
    if backend == "sqlite":
        pytest.skip("needs a statement that sleeps (pg_sleep / SLEEP)")
    server, _ = start(started, db_url, "--drain-seconds", "3")
    sleep = "pg_sleep(1.5)" if backend == "postgresql" else "SLEEP(1.5)"
    busy = session_proxy.create_engine(server.url, token=server.token, retry=NO_RETRIES)
    idle = session_proxy.create_engine(server.url, token=server.token, retry=NO_RETRIES)
    idle_conn = idle.connect()
    idle_conn.execute(entries.insert().values(note="left open"))
    outcome: list = []
    sleeping = threading.Event()

    def slow_transaction() -> None:
        with busy.connect() as conn:
            conn.execute(entries.insert().values(note="in flight"))
            sleeping.set()
            conn.execute(sa.text(f"SELECT {sleep}"))
            conn.commit()
            outcome.append("committed")

    worker = threading.Thread(target=slow_transaction)
    worker.start()
    assert sleeping.wait(20)
    wait_for(lambda: metric(server, "session_proxy_requests_in_flight") >= 2)
    server.process.send_signal(signal.SIGTERM)
    worker.join(30)
    assert outcome == ["committed"]
    # Draining: no new transaction is taken.
    with pytest.raises(sa.exc.OperationalError) as info:
        with busy.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    assert isinstance(info.value.orig, errors.ServerBusy)
    assert "shutting down" in str(info.value.orig)
    assert server.process.wait(30) == 0
    with pytest.raises(sa.exc.OperationalError):
        idle_conn.commit()
    idle_conn.close()
    assert notes(direct) == ["in flight"]
    assert "rolling them back" in server.log_path.read_text()
    busy.dispose()
    idle.dispose()


def test_a_key_reused_for_another_commit_is_refused_and_rolled_back(
    started, db_url, direct
) -> None:
    server, _ = start(started, db_url)
    reused = key("r")
    first = _post(server.url, server.headers, None, [_insert("first")], key("s")).json()["txn"]
    assert _post(server.url, server.headers, first, [{"op": "commit"}], reused).ok
    second = _post(server.url, server.headers, None, [_insert("second")], key("t")).json()["txn"]
    refused = _post(server.url, server.headers, second, [{"op": "commit"}], reused)
    assert refused.status_code == 409
    assert "already names another committed request" in refused.json()["error"]["message"]
    assert notes(direct) == ["first"]


def test_commit_when_the_outcome_table_was_dropped_by_hand(
    started, db_url, direct, backend
) -> None:
    """PostgreSQL aborts the transaction when the record cannot be written, so
    that commit must fail rather than roll back silently; elsewhere it goes
    ahead unrecorded.  Either way the table is back for the next commit."""
    server, _ = start(started, db_url)
    engine = session_proxy.create_engine(server.url, token=server.token, retry=NO_RETRIES)
    outcomes = "session_proxy_outcomes"
    schema = "session_proxy"
    qualified = f"{schema}.{outcomes}"
    if backend == "sqlite":
        # The server keeps it in a file of its own, attached as session_proxy.
        direct = sa.create_engine(db_url)
        sa.event.listen(direct, "connect", lambda dbapi, _: dbapi.execute(
            "ATTACH DATABASE ? AS session_proxy", (direct.url.database + ".session_proxy",)))
    with direct.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {qualified}"))
    with engine.connect() as conn:
        conn.execute(entries.insert().values(note="while dropped"))
        if backend == "postgresql":
            with pytest.raises(sa.exc.DBAPIError):
                conn.commit()
            conn.rollback()
        else:
            conn.commit()
    assert sa.inspect(direct).has_table(outcomes, schema=schema)
    with engine.begin() as conn:
        conn.execute(entries.insert().values(note="after"))
    with direct.connect() as conn:
        recorded = conn.execute(sa.text(f"SELECT count(*) FROM {qualified}")).scalar()
    assert recorded == 1
    # Out of the application's schema (SQLite: its main database) everywhere.
    assert outcomes not in sa.inspect(direct).get_table_names()
    expected = ["after"] if backend == "postgresql" else ["after", "while dropped"]
    assert notes(direct) == expected
    engine.dispose()


def test_commit_of_an_aborted_postgresql_transaction_rolls_back_as_directly(
    started, db_url, direct, backend
) -> None:
    if backend != "postgresql":
        pytest.skip("only PostgreSQL aborts a transaction on a failed statement")
    server, _ = start(started, db_url)
    engine = session_proxy.create_engine(server.url, token=server.token, retry=NO_RETRIES)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"INSERT INTO {TABLE} (note) VALUES ('aborted')")
        with pytest.raises(Exception, match="no_such_table"):
            cursor.execute("SELECT * FROM no_such_table")
        raw.commit()  # what psycopg does directly: COMMIT answers ROLLBACK
    finally:
        raw.close()
    assert notes(direct) == []
    engine.dispose()
