"""Application functions, written against ``settings.Session`` only."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import DagRun, TaskInstance, Variable
from .session import NEW_SESSION, provide_session


@provide_session
def set_variable(key: str, val: str, session: Session = NEW_SESSION) -> None:
    variable = session.scalars(sa.select(Variable).filter_by(key=key)).one_or_none()
    if variable is None:
        session.add(Variable(key=key, val=val))
    else:
        variable.val = val


@provide_session
def get_variable(key: str, session: Session = NEW_SESSION) -> str | None:
    return session.scalar(sa.select(Variable.val).filter_by(key=key))


@provide_session
def create_dag_run(dag_id: str, run_id: str, task_ids: list[str],
                   session: Session = NEW_SESSION) -> DagRun:
    run = DagRun(dag_id=dag_id, run_id=run_id,
                 logical_date=datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc),
                 task_instances=[TaskInstance(task_id=t) for t in task_ids])
    session.add(run)
    session.flush()
    return run


@provide_session
def start_task(dag_id: str, run_id: str, task_id: str, session: Session = NEW_SESSION) -> bool:
    ti = session.scalars(
        sa.select(TaskInstance).join(DagRun)
        .where(DagRun.dag_id == dag_id, DagRun.run_id == run_id, TaskInstance.task_id == task_id)
        .with_for_update(of=TaskInstance)
    ).one()
    if ti.state is not None:
        return False
    ti.state = "running"
    ti.try_number += 1
    return True


@provide_session
def run_states(dag_id: str, session: Session = NEW_SESSION) -> dict[str, list[tuple]]:
    runs = session.scalars(sa.select(DagRun).filter_by(dag_id=dag_id).order_by(DagRun.run_id))
    return {
        run.run_id: [(ti.task_id, ti.state, ti.try_number) for ti in run.task_instances]
        for run in runs
    }
