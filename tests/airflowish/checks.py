"""The application's own test functions: they assert, and return nothing."""

from __future__ import annotations

import sqlalchemy as sa

from . import api, settings
from .models import Base, DagRun
from .session import create_session


def reset_database() -> None:
    Base.metadata.drop_all(settings.engine)
    Base.metadata.create_all(settings.engine)


def check_variables() -> None:
    assert api.get_variable("missing") is None
    api.set_variable("greeting", "hello")
    api.set_variable("greeting", "hello again")
    assert api.get_variable("greeting") == "hello again"


def check_dag_runs() -> None:
    run = api.create_dag_run("etl", "manual_1", ["extract", "load"])
    # expire_on_commit=False: the returned run keeps its loaded values.
    assert (run.dag_id, run.run_id, run.state) == ("etl", "manual_1", "queued")
    assert api.start_task("etl", "manual_1", "extract") is True
    assert api.start_task("etl", "manual_1", "extract") is False
    assert api.run_states("etl") == {
        "manual_1": [("extract", "running", 1), ("load", None, 0)]
    }


def check_rollback_on_error() -> None:
    try:
        with create_session() as session:
            session.add(DagRun(dag_id="etl", run_id="manual_1",
                               logical_date=sa.func.now()))
            session.flush()  # duplicate (dag_id, run_id)
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("duplicate dag run was accepted")
    assert list(api.run_states("etl")) == ["manual_1"]


def check_shared_session() -> None:
    with create_session() as session:
        api.set_variable("inside", "1", session=session)
        # the same (scoped) session sees its own unflushed work after autoflush-free flush
        session.flush()
        assert api.get_variable("inside", session=session) == "1"
    settings.Session.remove()
    assert api.get_variable("inside") == "1"


ALL_CHECKS = [check_variables, check_dag_runs, check_rollback_on_error, check_shared_session]


def run_all() -> int:
    reset_database()
    for check in ALL_CHECKS:
        check()
    return len(ALL_CHECKS)
