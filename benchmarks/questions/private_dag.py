"""A DAG of a question's own, written beside the run's rows and deleted after.

The questions need DAGs at other scales than the run seeded, or runs they
may change freely.  :func:`private_dag` writes one under its own dag id, in
the shapes of :mod:`..workload.seed` (a fan-out/fan-in DAG, one live run
whose root has succeeded), and deletes every row carrying that dag id when
the block ends, so the run's own rows are left as found.  Its running task
instances have no job (the seed's jobs belong to the seed's DAGs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterator

import sqlalchemy as sa

from ..workload.models import Dag, DagRun, DagTask, Log, TaskEdge, TaskInstance, XCom
from ..workload.seed import BASE_TIME, structure, task_id

#: Tables holding rows of a dag id, children first (the order rows are deleted in).
_BY_DAG_ID = (Log, XCom, TaskInstance, DagRun, TaskEdge, DagTask, Dag)


@dataclasses.dataclass(frozen=True)
class PrivateDag:
    """Names of a private DAG and of its live run."""

    dag: str
    tasks: int
    run: str = "live"

    @property
    def root(self) -> str:
        return task_id(0)

    @property
    def middle(self) -> list[str]:
        """The tasks between the root and the last one (the fan-out)."""
        return [task_id(t) for t in range(1, self.tasks - 1)]

    @property
    def last(self) -> str:
        return task_id(self.tasks - 1)

    def ti_key(self, task: str) -> tuple[str, str, str, int]:
        return (self.dag, task, self.run, -1)


def _write(conn: sa.Connection, dag: PrivateDag) -> None:
    start = BASE_TIME - datetime.timedelta(days=1)
    conn.execute(sa.insert(Dag), [{"dag_id": dag.dag, "fileloc": f"/dags/{dag.dag}.py",
                                   "is_paused": False, "description": "question DAG",
                                   "last_parsed": BASE_TIME}])
    conn.execute(sa.insert(DagTask), [
        {"dag_id": dag.dag, "task_id": task_id(t), "operator": "PythonOperator",
         "trigger_rule": "all_done" if t == dag.tasks - 1 else "all_success",
         "priority_weight": 1}
        for t in range(dag.tasks)
    ])
    edges = structure(dag.tasks)
    if edges:
        conn.execute(sa.insert(TaskEdge), [
            {"dag_id": dag.dag, "upstream_task_id": up, "downstream_task_id": down}
            for up, down in edges
        ])
    conn.execute(sa.insert(DagRun), [{
        "dag_id": dag.dag, "run_id": dag.run, "state": "running", "run_type": "scheduled",
        "logical_date": start, "queued_at": start, "start_date": start, "end_date": None,
    }])
    conn.execute(sa.insert(TaskInstance), [
        {"dag_id": dag.dag, "task_id": task_id(t), "run_id": dag.run, "map_index": -1,
         "state": None, "try_number": 0, "max_tries": 1, "queued_dttm": start}
        for t in range(dag.tasks)
    ])


def restore(conn: sa.Connection, dag: PrivateDag, running: int | None = None) -> None:
    """Put the live run back: root succeeded, ``running`` middle tasks running, rest unset.

    ``running`` defaults to the seed's tenth of the middle tasks.
    """
    if running is None:
        running = max(1, (dag.tasks - 2) // 10) if dag.tasks > 2 else 0
    start = BASE_TIME - datetime.timedelta(days=1)
    live = sa.and_(TaskInstance.dag_id == dag.dag, TaskInstance.run_id == dag.run)
    conn.execute(sa.update(DagRun).where(DagRun.dag_id == dag.dag, DagRun.run_id == dag.run)
                 .values(state="running", queued_at=start))
    conn.execute(sa.update(TaskInstance).where(live).values(
        state=None, try_number=0, hostname=None, pid=None, start_date=None, end_date=None,
        duration=None))
    conn.execute(sa.update(TaskInstance).where(live, TaskInstance.task_id == dag.root).values(
        state="success", try_number=1, start_date=start, end_date=start, duration=0.0))
    chosen = dag.middle[:running]
    if chosen:
        conn.execute(sa.update(TaskInstance).where(live, TaskInstance.task_id.in_(chosen))
                     .values(state="running", try_number=1, hostname="question-worker",
                             pid=4242, start_date=start))
    conn.execute(sa.delete(Log).where(Log.dag_id == dag.dag))
    conn.execute(sa.delete(TaskInstance).where(TaskInstance.dag_id == dag.dag,
                                               TaskInstance.run_id != dag.run))
    conn.execute(sa.delete(DagRun).where(DagRun.dag_id == dag.dag, DagRun.run_id != dag.run))


def drop(conn: sa.Connection, dag_id: str) -> None:
    """Delete every row of ``dag_id``."""
    for model in _BY_DAG_ID:
        conn.execute(sa.delete(model).where(model.dag_id == dag_id))


@contextlib.contextmanager
def private_dag(engine: sa.Engine, dag_id: str, tasks: int,
                running: int | None = None) -> Iterator[PrivateDag]:
    """A private DAG of ``tasks`` tasks with its live run restored; deleted on exit."""
    if tasks < 3:
        raise ValueError(f"a private DAG needs at least 3 tasks, got {tasks}")
    dag = PrivateDag(dag_id, tasks)
    with engine.begin() as conn:
        drop(conn, dag_id)  # left over by an interrupted run
        _write(conn, dag)
        restore(conn, dag, running)
    try:
        yield dag
    finally:
        with engine.begin() as conn:
            drop(conn, dag_id)
