"""The workload's operations, each written once as a session-taking function.

Every function here is a ``@remote_operation``: direct and proxy modes call
it with a session of their engine, logical mode sends the call to a server
started with ``--operations session_proxy_bench.workload.operations``.  Times that
end up in the database are taken from a ``now`` argument (default: the
current UTC time), so a fixed script of calls writes identical rows in
every mode.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from session_proxy import remote_operation

from .models import Connection, DagRun, DagTask, Job, Log, TaskEdge, TaskInstance, Variable, XCom

TIKey = tuple[str, str, str, int]

FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed"})
SCHEDULABLE = frozenset({"scheduled", "queued"})


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.timezone.utc)


def _aware(value: datetime.datetime) -> datetime.datetime:
    # SQLite keeps no zone; its stored times are UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)


def _ti_filter(ti_key: TIKey) -> Any:
    dag_id, task_id, run_id, map_index = ti_key
    return sa.and_(
        TaskInstance.dag_id == dag_id,
        TaskInstance.task_id == task_id,
        TaskInstance.run_id == run_id,
        TaskInstance.map_index == map_index,
    )


def _log(session: Session, now: datetime.datetime, event: str, ti_key: TIKey | None = None,
         extra: str | None = None) -> None:
    dag_id, task_id, run_id = (ti_key[0], ti_key[1], ti_key[2]) if ti_key else (None,) * 3
    session.add(Log(dttm=now, dag_id=dag_id, task_id=task_id, run_id=run_id, event=event,
                    extra=extra))


@remote_operation
def get_dag_run(dag_id: str, run_id: str, *, session: Session) -> DagRun | None:
    """One dag run, or None."""
    return session.scalars(
        sa.select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
    ).one_or_none()


@remote_operation
def get_variable(key: str, *, session: Session) -> str | None:
    """A variable's value, or None."""
    return session.scalar(sa.select(Variable.val).where(Variable.key == key))


@remote_operation
def set_variable(key: str, value: str, *, session: Session) -> None:
    """Create or update a variable."""
    variable = session.scalars(sa.select(Variable).where(Variable.key == key)).one_or_none()
    if variable is None:
        session.add(Variable(key=key, val=value))
    else:
        variable.val = value


@remote_operation
def get_connection(conn_id: str, *, session: Session) -> Connection | None:
    """A connection, password included."""
    return session.scalars(
        sa.select(Connection).where(Connection.conn_id == conn_id)
    ).one_or_none()


@remote_operation
def xcom_push(
    dag_id: str,
    run_id: str,
    task_id: str,
    key: str,
    value: Any,
    map_index: int = -1,
    now: datetime.datetime | None = None,
    *,
    session: Session,
) -> None:
    """Store a JSON value, replacing an earlier one under the same key."""
    session.execute(
        sa.delete(XCom).where(
            XCom.dag_id == dag_id,
            XCom.run_id == run_id,
            XCom.task_id == task_id,
            XCom.map_index == map_index,
            XCom.key == key,
        )
    )
    session.add(XCom(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index,
                     key=key, value=value, timestamp=_now(now)))


@remote_operation
def xcom_pull(
    dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1,
    *, session: Session,
) -> Any:
    """A stored JSON value, or None."""
    return session.scalar(
        sa.select(XCom.value).where(
            XCom.dag_id == dag_id,
            XCom.run_id == run_id,
            XCom.task_id == task_id,
            XCom.map_index == map_index,
            XCom.key == key,
        )
    )


@remote_operation
def heartbeat(job_id: int, now: datetime.datetime | None = None, *,
              session: Session) -> datetime.datetime:
    """Record a job's heartbeat; return the new timestamp."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise LookupError(f"no job {job_id}")
    job.latest_heartbeat = _now(now)
    session.flush()
    return job.latest_heartbeat


@remote_operation
def start_task(ti_key: TIKey, hostname: str, pid: int, job_id: int | None = None,
               now: datetime.datetime | None = None, *, session: Session) -> bool:
    """Move a scheduled/queued task instance to running; False if it wasn't startable."""
    ti = session.scalars(sa.select(TaskInstance).where(_ti_filter(ti_key))
                         .with_for_update()).one()
    if ti.state not in SCHEDULABLE:
        return False
    now = _now(now)
    ti.state = "running"
    ti.try_number += 1
    ti.hostname, ti.pid, ti.job_id = hostname, pid, job_id
    ti.start_date = ti.last_heartbeat = now
    _log(session, now, "running", ti_key)
    return True


@remote_operation
def finish_task(ti_key: TIKey, state: str, now: datetime.datetime | None = None, *,
                session: Session) -> float | None:
    """Set a finished state; return the task's duration in seconds."""
    if state not in FINISHED:
        raise ValueError(f"{state!r} is not a finished state; expected one of {sorted(FINISHED)}")
    ti = session.scalars(sa.select(TaskInstance).where(_ti_filter(ti_key))
                         .with_for_update()).one()
    now = _now(now)
    ti.state = state
    ti.end_date = now
    ti.duration = (now - _aware(ti.start_date)).total_seconds() if ti.start_date else None
    _log(session, now, state, ti_key)
    return ti.duration


def _ready(rule: str, upstream_states: list[str | None]) -> bool:
    if rule == "all_done":
        return all(state in FINISHED for state in upstream_states)
    if rule == "one_success":
        return any(state == "success" for state in upstream_states)
    return all(state in ("success", "skipped") for state in upstream_states)


@remote_operation
def mini_scheduler(dag_id: str, run_id: str, finished_task_id: str, *,
                   session: Session) -> list[str]:
    """Schedule the downstream tasks a finished task made ready; return their ids.

    Locks the dag run, loads every task instance of the run and the DAG's
    structure, evaluates trigger rules and sets the ready ones to
    ``scheduled`` in one bulk update.
    """
    session.scalars(
        sa.select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        .with_for_update()
    ).one()
    tis = session.scalars(
        sa.select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                      TaskInstance.run_id == run_id)
    ).all()
    state = {ti.task_id: ti.state for ti in tis}
    upstream: dict[str, list[str]] = {}
    downstream: list[str] = []
    for up, down in session.execute(
        sa.select(TaskEdge.upstream_task_id, TaskEdge.downstream_task_id)
        .where(TaskEdge.dag_id == dag_id)
    ):
        upstream.setdefault(down, []).append(up)
        if up == finished_task_id:
            downstream.append(down)
    rules = dict(session.execute(
        sa.select(DagTask.task_id, DagTask.trigger_rule).where(DagTask.dag_id == dag_id)
    ).all())
    ready = sorted(
        task_id
        for task_id in downstream
        if state.get(task_id) is None
        and _ready(rules.get(task_id, "all_success"), [state.get(u) for u in upstream[task_id]])
    )
    if ready:
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                   TaskInstance.task_id.in_(ready))
            .values(state="scheduled")
        )
    return ready


@remote_operation
def create_dag_run(dag_id: str, run_id: str, logical_date: datetime.datetime,
                   run_type: str = "manual", now: datetime.datetime | None = None, *,
                   session: Session) -> DagRun:
    """Create a dag run and a task instance per task; root tasks start scheduled."""
    now = _now(now)
    run = DagRun(dag_id=dag_id, run_id=run_id, state="queued", run_type=run_type,
                 logical_date=logical_date, queued_at=now)
    task_ids = session.scalars(
        sa.select(DagTask.task_id).where(DagTask.dag_id == dag_id).order_by(DagTask.task_id)
    ).all()
    has_upstream = set(session.scalars(
        sa.select(TaskEdge.downstream_task_id).where(TaskEdge.dag_id == dag_id)
    ).all())
    run.task_instances = [
        TaskInstance(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1,
                     try_number=0, max_tries=1,
                     state=None if task_id in has_upstream else "scheduled")
        for task_id in task_ids
    ]
    session.add(run)
    session.flush()
    return run


@remote_operation
def find_zombies(threshold_seconds: float, now: datetime.datetime | None = None, *,
                 session: Session) -> list[TIKey]:
    """Running task instances whose job's heartbeat is older than the threshold."""
    limit = _now(now) - datetime.timedelta(seconds=threshold_seconds)
    rows = session.execute(
        sa.select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.run_id,
                  TaskInstance.map_index)
        .join(Job, TaskInstance.job_id == Job.id)
        .where(TaskInstance.state == "running", Job.latest_heartbeat < limit)
        .order_by(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id)
    ).all()
    return [tuple(row) for row in rows]


@remote_operation
def clear_task_instances(dag_id: str, run_id: str, task_ids: list[str] | None = None,
                         now: datetime.datetime | None = None, *, session: Session) -> int:
    """Reset task instances of a run for re-running; return how many were cleared."""
    condition = sa.and_(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    if task_ids is not None:
        condition = sa.and_(condition, TaskInstance.task_id.in_(task_ids))
    cleared = session.execute(
        sa.update(TaskInstance)
        .where(condition)
        .values(state=None, hostname=None, pid=None, job_id=None, start_date=None,
                end_date=None, duration=None, max_tries=TaskInstance.max_tries + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.execute(
        sa.update(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        .values(state="queued")
        .execution_options(synchronize_session=False)
    )
    _log(session, _now(now), "clear", (dag_id, "", run_id, -1), extra=str(cleared))
    return cleared


@remote_operation
def enqueue_dag_run(dag_id: str, run_id: str, now: datetime.datetime | None = None, *,
                    session: Session) -> datetime.datetime:
    """Mark a dag run queued now; return its ``queued_at``.

    The dedicated write a logical client needs for "set ``queued_at`` and
    save it" (the thread's own example), which a session does with an
    attribute assignment and a commit.
    """
    run = session.scalars(
        sa.select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        .with_for_update()
    ).one()
    run.state = "queued"
    run.queued_at = _now(now)
    session.flush()
    return run.queued_at


@remote_operation
def get_task_instances(dag_id: str, run_id: str, *, session: Session) -> list[TaskInstance]:
    """Every task instance of a dag run, by task id.

    What a logical client calls instead of touching ``dag_run.task_instances``,
    which a detached dag run cannot load.
    """
    return list(session.scalars(
        sa.select(TaskInstance)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        .order_by(TaskInstance.task_id)
    ).all())
