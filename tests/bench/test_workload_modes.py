"""One fixed script of workload operations, in direct, proxy, proxy_best and logical modes.

Every mode must return equal values and leave byte-for-byte equal table
contents (full dumps compared), on every backend.  Round trips per operation
are asserted for every operation: the read-only ones (``get_dag_run``,
``get_variable``, ``xcom_pull``, ...) cost one, as through the logical API.
A workload operation's result comes back through the logical API detached,
with its lazy relationship left unloaded.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.exc import DetachedInstanceError

from session_proxy.logical import RemoteClient, operation_mode
from session_proxy_bench.workload import operations as workload_ops
from session_proxy_bench.workload.models import DagRun
from session_proxy_bench.workload.modes import MODES, ModeRunner
from session_proxy_bench.workload.script import SCRIPT, SCRIPT_SEED, dump_tables, plain
from session_proxy_bench.workload.seed import reset_schema, seed
from tests.conftest import ServerProcess


@pytest.fixture
def seeded(direct_engine: sa.Engine):
    def reseed() -> None:
        reset_schema(direct_engine)
        with sessionmaker(bind=direct_engine)() as session:
            seed(session, **SCRIPT_SEED)
            session.commit()

    return reseed


def _run_script(runner: ModeRunner) -> tuple[list, list]:
    results, round_trips = [], []
    with runner.active():
        for _label, operation, args, kwargs in SCRIPT:
            before = runner.snapshot()
            results.append(plain(operation(*args, **kwargs)))
            round_trips.append((runner.snapshot() - before).round_trips)
    return results, round_trips


def test_all_modes_agree(
    seeded, db_url: str, server: ServerProcess, direct_engine: sa.Engine
) -> None:
    outcomes = {}
    for mode in MODES:
        seeded()
        runner = ModeRunner(mode, db_url=db_url, server_url=server.url, token=server.token)
        try:
            if runner.engine is not None:
                with runner.engine.connect():
                    pass  # first-connect queries are not part of any operation
            results, round_trips = _run_script(runner)
        finally:
            runner.close()
        outcomes[mode] = (results, round_trips, dump_tables(direct_engine))

    labels = [label for label, *_ in SCRIPT]
    direct_results, _, direct_dump = outcomes["direct"]
    # The script did real work: spot-check values computed from the seed.
    by_label = dict(zip(labels, direct_results, strict=True))
    assert by_label["mini_scheduler"] == [f"t{t:03d}" for t in range(2, 11)]
    assert by_label["start_task scheduled"] is True
    assert by_label["finish_task"] == 120.0
    assert by_label["clear_task_instances"] == 12
    assert by_label["xcom_pull"] == {"a": [1, 2.5, {"b": None}], "$t": "x"}
    for mode in ("proxy", "proxy_best", "logical"):
        results, _, dump = outcomes[mode]
        for label, expected, got in zip(labels, direct_results, results, strict=True):
            assert got == expected, f"{mode}: {label}"
        assert dump == direct_dump, f"{mode} left different table contents"

    logical_trips = dict(zip(labels, outcomes["logical"][1], strict=True))
    assert set(logical_trips.values()) == {1}  # one request per call, whatever it does
    proxy_trips = dict(zip(labels, outcomes["proxy_best"][1], strict=True))
    default_trips = dict(zip(labels, outcomes["proxy"][1], strict=True))
    # One round trip per statement whose result the code needs before it
    # can go on (SELECTs, key-generating INSERTs, an UPDATE whose rowcount
    # it returns), plus one final request carrying every other write and
    # the COMMIT.  An operation that only read commits without waiting
    # (session_proxy.background): its SELECT is its only round trip, as
    # through the logical API.
    reads_only = {
        "get_dag_run", "get_dag_run missing", "get_variable", "get_variable new",
        "get_connection", "xcom_pull", "xcom_pull seeded", "find_zombies",
    }
    if db_url.startswith("sqlite"):
        # They read with FOR UPDATE and then write nothing: a lock, and a
        # COMMIT that waits, except on SQLite, which has no row locks (the
        # dialect leaves FOR UPDATE out).
        reads_only |= {"start_task running", "start_task waiting", "mini_scheduler after clear"}
    needed = {
        "get_dag_run": 1, "get_dag_run missing": 1, "get_variable": 1,
        "set_variable existing": 1,
        "set_variable new": 2,  # SELECT, INSERT of a variable with a generated id
        "get_variable new": 1, "get_connection": 1,
        "xcom_push": 0,  # DELETE and INSERT (client-side key) ride with the COMMIT
        "xcom_pull": 1, "xcom_pull seeded": 1,
        "heartbeat": 1,  # SELECT ... FOR UPDATE; the flushed UPDATE rides along
        "start_task running": 1, "start_task waiting": 1,
        "mini_scheduler": 4,  # four SELECTs; the bulk UPDATE rides with the COMMIT
        "start_task scheduled": 2,  # SELECT, INSERT of a log row (generated id)
        "finish_task": 2,
        "create_dag_run": 3,  # two SELECTs, the dag_run INSERT; task instances ride
        "find_zombies": 1,
        "clear_task_instances": 2,  # UPDATE whose rowcount it returns, log INSERT
        "mini_scheduler after clear": 4,
    }
    assert proxy_trips == {
        label: n + (label not in reads_only) for label, n in needed.items()
    }
    # With the engine's defaults (mode ``proxy``) a Core DML statement and an
    # explicit session.flush() each wait for their answer: one more round
    # trip in the operations that have one (and only in those).
    waits = {
        "xcom_push": 1,  # the Core DELETE of the old value
        "heartbeat": 1,  # session.flush() of the new timestamp
        "mini_scheduler": 1,  # the bulk Core UPDATE
        "create_dag_run": 1,  # session.flush() of the run's task instances
        "clear_task_instances": 1,  # the Core UPDATE of the dag_run
    }  # "mini_scheduler after clear" finds nothing ready, so sends no UPDATE
    assert default_trips == {
        label: trips + waits.get(label, 0) for label, trips in proxy_trips.items()
    }
    assert {label: proxy_trips[label] for label in ("get_dag_run", "get_variable", "xcom_pull")} \
        == {"get_dag_run": 1, "get_variable": 1, "xcom_pull": 1}
    assert outcomes["direct"][1] == [0] * len(SCRIPT)


def test_workload_get_dag_run_is_detached_with_unloaded_relationship(
    server: ServerProcess, direct_engine: sa.Engine
) -> None:
    reset_schema(direct_engine)
    with sessionmaker(bind=direct_engine)() as session:
        seed(session)
        session.commit()
    workload_client = RemoteClient(server.url, token=server.token)
    try:
        with operation_mode(client=workload_client):
            run = workload_ops.get_dag_run("dag_000", "run_0002")
    finally:
        workload_client.close()
    assert type(run) is DagRun
    state = sa.inspect(run)
    assert state.detached is True
    assert (run.dag_id, run.run_id, run.state) == ("dag_000", "run_0002", "running")
    assert "task_instances" in state.unloaded
    assert "task_instances" not in state.dict
    with pytest.raises(DetachedInstanceError):
        _ = run.task_instances
