"""Open transactions' follow-ups are never starved of server threads.

A server with few threads, more client threads than that, all updating the
same row in two-request transactions (the begin and the UPDATE in one
request, the COMMIT in a second).  The UPDATEs of later transactions block
on the row lock the first one holds, and without admission control they
take every server thread while the lock holder's COMMIT waits in the
server's queue for one: nothing moves until the lease expires.  With it,
requests that would start a transaction beyond what the threads can carry
are refused at once (503 ``server_busy``) and retried by the client, the
COMMITs get threads, and every transaction commits.

The client timeout is short and the lease long, so a stall fails the test
(a ``ProxyTimeout``) rather than hanging it.  The assertions are counts:
committed increments equal attempts, and the server refused some requests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.logical import RemoteClient
from session_proxy.retry import NO_RETRIES, RetryPolicy
from tests import operations_for_tests as ops
from tests.conftest import ServerProcess, scratch_table, wait_for

SERVER_THREADS = 4
CLIENT_THREADS = 10
TRANSACTIONS_EACH = 6
#: Short enough that a stalled server fails the test quickly.
CLIENT_TIMEOUT = 10
#: The default policy (refused begins are retried until the deadline),
#: with a deadline that makes a stalled server fail the test quickly.
RETRY = RetryPolicy(deadline=25)
TABLE = "sp_starvation"
COUNT_NOTES = "tests.operations_for_tests.count_notes"


@pytest.fixture
def counter_table(db_url: str) -> Iterator[sa.Engine]:
    with scratch_table(db_url, TABLE, "id INTEGER PRIMARY KEY, n INTEGER NOT NULL",
                       [{"id": 1, "n": 0}]) as direct:
        yield direct


def committed(direct: sa.Engine) -> int:
    with direct.connect() as conn:
        return conn.execute(sa.text(f"SELECT n FROM {TABLE} WHERE id = 1")).scalar_one()


def hammer(server: ServerProcess) -> tuple[int, list[BaseException]]:
    """Run every client thread's transactions; (successes, failures)."""
    engine = session_proxy.create_engine(
        server.url, token=server.token, timeout=CLIENT_TIMEOUT, retry=RETRY,
        verify=server.verify, pool_size=CLIENT_THREADS, max_overflow=0,
    )
    successes = 0
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        nonlocal successes
        for _ in range(TRANSACTIONS_EACH):
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(f"UPDATE {TABLE} SET n = n + 1 WHERE id = 1"))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    failures.append(exc)
                return
            with lock:
                successes += 1

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    return successes, failures


@pytest.mark.parametrize("serving", ["waitress", "cheroot-tls"])
def test_row_lock_waits_do_not_starve_commits(
    serving: str, backend: str, db_url: str, counter_table: sa.Engine, tmp_path: Path
) -> None:
    if serving == "cheroot-tls" and backend != "postgresql":
        pytest.skip("the TLS server runs the same app: one backend shows it")
    tls_dir = tmp_path / "tls" if serving == "cheroot-tls" else None
    with ServerProcess(
        db_url, "--threads", str(SERVER_THREADS), "--lease-seconds", "120",
        tls_dir=tls_dir,
    ) as server:
        successes, failures = hammer(server)
        attempts = CLIENT_THREADS * TRANSACTIONS_EACH
        assert failures == []
        assert successes == attempts
        refused = server.metric("session_proxy_refused_busy_total")
        admitted = server.metric("session_proxy_admitted_total")
    assert committed(counter_table) == attempts
    # The scenario did need admission control: some begins were turned away.
    assert refused > 0
    assert admitted >= attempts


def test_threads_kept_for_open_transactions_refuse_new_work_until_one_ends(
    db_url: str, counter_table: sa.Engine
) -> None:
    """Two threads, two idle open transactions: new work is refused, then retried in.

    The refusal is 503 ``server_busy`` (``ServerBusy`` without retries) for
    a proxied begin and a logical call alike; with retries, the logical
    call goes through once one of the transactions commits.
    """
    ops.Base.metadata.create_all(counter_table)
    with ServerProcess(
        db_url, "--threads", "2", "--operations", "tests.operations_for_tests"
    ) as server:
        # A request is counted in flight until its response is written, and
        # its transaction idle from when its answer was made: for that short
        # while admission counts it twice and may refuse the second begin,
        # so the two that open transactions may retry.
        opener = session_proxy.create_engine(server.url, token=server.token)
        engine = session_proxy.create_engine(server.url, token=server.token, retry=NO_RETRIES)
        first, second = opener.connect(), opener.connect()
        for conn in (first, second):
            conn.begin()
            conn.execute(sa.text(f"SELECT n FROM {TABLE} WHERE id = 1")).scalar_one()
        # Both threads are kept for the two transactions' next requests.
        with pytest.raises(sa.exc.OperationalError) as refused, engine.connect() as third:
            third.execute(sa.text(f"SELECT n FROM {TABLE} WHERE id = 1"))
        assert isinstance(refused.value.orig, errors.ServerBusy)
        assert refused.value.orig.code == "server_busy"
        impatient = RemoteClient(server.url, token=server.token, retry=NO_RETRIES)
        with pytest.raises(errors.ServerBusy) as refused_call:
            impatient.call(COUNT_NOTES, (), {})
        assert refused_call.value.code == "server_busy"
        refused_before = server.metric("session_proxy_refused_busy_total")
        assert refused_before >= 2

        patient = RemoteClient(
            server.url, token=server.token,
            retry=RetryPolicy(attempts=1000, first_delay=0.01, max_delay=0.05, deadline=60),
        )
        answers: list[int] = []
        caller = threading.Thread(
            target=lambda: answers.append(patient.call(COUNT_NOTES, (), {}))
        )
        caller.start()
        wait_for(lambda: server.metric("session_proxy_refused_busy_total") >= refused_before + 2)
        # A follow-up is never refused: the COMMIT runs, and frees a thread.
        first.commit()
        caller.join()
        assert answers == [0]
        second.commit()
        for resource in (first, second, impatient, patient):
            resource.close()
        engine.dispose()
        opener.dispose()
    ops.Base.metadata.drop_all(counter_table)
