"""A deterministic data generator for the workload schema.

``seed(session, dags=, runs_per_dag=, tasks_per_dag=)`` writes the same rows
every time.  Each DAG is a fan-out/fan-in: ``t000`` feeds every middle task
and the middle tasks feed the last one (trigger rule ``all_done``).  All runs
but the last are finished; in the last run the root has succeeded, a tenth of
the middle tasks are running under jobs of which half have stale heartbeats,
and the rest wait to be scheduled: the state ``mini_scheduler`` acts on.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import (
    Base,
    Connection,
    Dag,
    DagRun,
    DagTask,
    Job,
    TaskEdge,
    TaskInstance,
    Variable,
    XCom,
)

BASE_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
STALE = datetime.timedelta(minutes=10)


def dag_id(d: int) -> str:
    return f"dag_{d:03d}"


def task_id(t: int) -> str:
    return f"t{t:03d}"


def run_id(r: int) -> str:
    return f"run_{r:04d}"


def structure(tasks_per_dag: int) -> list[tuple[str, str]]:
    """Edges ``(upstream, downstream)`` of a fan-out/fan-in DAG of ``tasks_per_dag`` tasks."""
    if tasks_per_dag < 2:
        return []
    if tasks_per_dag == 2:
        return [(task_id(0), task_id(1))]
    last = tasks_per_dag - 1
    middle = range(1, last)
    fan_out = [(task_id(0), task_id(m)) for m in middle]
    return fan_out + [(task_id(m), task_id(last)) for m in middle]


def seed(
    session: Session,
    dags: int = 2,
    runs_per_dag: int = 3,
    tasks_per_dag: int = 10,
    now: datetime.datetime = BASE_TIME,
) -> None:
    """Write the deterministic data set (the caller commits)."""
    rows: dict[Any, list[dict]] = {model: [] for model in (
        Dag, DagTask, TaskEdge, Job, DagRun, TaskInstance, Variable, Connection, XCom)}
    edges = structure(tasks_per_dag)
    last_task = task_id(tasks_per_dag - 1)
    n_running = max(1, (tasks_per_dag - 2) // 10) if tasks_per_dag > 2 else 0
    for d in range(dags):
        dag = dag_id(d)
        rows[Dag].append({"dag_id": dag, "fileloc": f"/dags/{dag}.py", "is_paused": False,
                          "description": f"reference DAG {d}", "last_parsed": now})
        for t in range(tasks_per_dag):
            rows[DagTask].append({
                "dag_id": dag, "task_id": task_id(t), "operator": "PythonOperator",
                "trigger_rule": "all_done" if task_id(t) == last_task and t > 0
                else "all_success",
                "priority_weight": 1,
            })
        rows[TaskEdge].extend(
            {"dag_id": dag, "upstream_task_id": up, "downstream_task_id": down}
            for up, down in edges
        )
        for j in range(2):
            job_number = 2 * d + j + 1
            rows[Job].append({
                "id": job_number, "job_type": "LocalTaskJob", "state": "running",
                "hostname": f"worker-{job_number}", "start_date": now - STALE * 2,
                "latest_heartbeat": now - (STALE if j else datetime.timedelta(seconds=5)),
            })
        for r in range(runs_per_dag):
            live = r == runs_per_dag - 1
            run = run_id(r)
            start = now - datetime.timedelta(days=runs_per_dag - r)
            rows[DagRun].append({
                "dag_id": dag, "run_id": run, "state": "running" if live else "success",
                "run_type": "scheduled", "logical_date": start, "queued_at": start,
                "start_date": start, "end_date": None if live else start + STALE,
            })
            for t in range(tasks_per_dag):
                ti: dict[str, Any] = {
                    "dag_id": dag, "task_id": task_id(t), "run_id": run, "map_index": -1,
                    "state": "success", "try_number": 1, "max_tries": 1, "hostname": None,
                    "pid": None, "job_id": None, "queued_dttm": start, "start_date": start,
                    "end_date": start + STALE, "duration": STALE.total_seconds(),
                    "last_heartbeat": None,
                }
                if live and t > 0:
                    running = 1 <= t <= n_running
                    ti.update(state="running" if running else None, try_number=int(running),
                              end_date=None, duration=None,
                              start_date=start if running else None,
                              hostname=f"worker-{2 * d + 1 + t % 2}" if running else None,
                              pid=1000 + t if running else None,
                              job_id=2 * d + 1 + t % 2 if running else None)
                rows[TaskInstance].append(ti)
            if live:
                rows[XCom].append({
                    "dag_id": dag, "run_id": run, "task_id": task_id(0), "map_index": -1,
                    "key": "return_value", "value": {"rows": d, "files": [f"s3://b/{d}"]},
                    "timestamp": start,
                })
    rows[Variable] = [{"key": f"var_{i:03d}", "val": f"value {i}", "description": None}
                      for i in range(20)]
    rows[Connection] = [
        {"conn_id": f"conn_{i}", "conn_type": "postgres", "host": f"db{i}.internal",
         "login": "etl", "password": f"secret-{i}", "port": 5432, "extra": "{}"}
        for i in range(5)
    ]
    for model, values in rows.items():
        if values:
            session.execute(sa.insert(model), values)


def reset_schema(engine: sa.Engine) -> None:
    """Drop and recreate every workload table."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
