"""How each workload operation is sampled repeatedly under equal conditions.

A :class:`Scenario` gives an operation's arguments for sample ``i`` and an
untimed ``prepare`` step, run on a direct connection before every sample,
that puts the rows the operation acts on back into the seeded state.  So the
hundredth ``mini_scheduler`` sample schedules as many tasks as the first, and
every mode does the same work.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from .workload import operations as ops
from .workload.models import DagRun, TaskInstance
from .workload.seed import BASE_TIME, dag_id, run_id, task_id


@dataclasses.dataclass(frozen=True)
class Context:
    """What scenarios need to know about the seeded data set."""

    tasks_per_dag: int
    runs_per_dag: int

    @property
    def dag(self) -> str:
        return dag_id(0)

    @property
    def live_run(self) -> str:
        return run_id(self.runs_per_dag - 1)

    @property
    def n_running(self) -> int:
        return max(1, (self.tasks_per_dag - 2) // 10) if self.tasks_per_dag > 2 else 0

    def ti_key(self, t: int) -> tuple[str, str, str, int]:
        return (self.dag, task_id(t), self.live_run, -1)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One operation under test."""

    name: str
    operation: Callable[..., Any]
    arguments: Callable[[int, Context], tuple[tuple, dict]]
    prepare: Callable[[sa.Connection, int, Context], None] | None = None
    #: Whether its cost grows with tasks_per_dag (measured at every scale).
    scaled: bool = False


def restore_live_run(conn: sa.Connection, ctx: Context) -> None:
    """Put the live run's task instances back into their seeded states."""
    live = sa.and_(TaskInstance.dag_id == ctx.dag, TaskInstance.run_id == ctx.live_run)
    conn.execute(sa.update(DagRun).where(DagRun.dag_id == ctx.dag, DagRun.run_id == ctx.live_run)
                 .values(state="running"))
    conn.execute(sa.update(TaskInstance).where(live).values(state=None, try_number=0))
    conn.execute(sa.update(TaskInstance).where(live, TaskInstance.task_id == task_id(0))
                 .values(state="success", try_number=1))
    running = [task_id(t) for t in range(1, ctx.n_running + 1)]
    if running:
        conn.execute(sa.update(TaskInstance).where(live, TaskInstance.task_id.in_(running))
                     .values(state="running", try_number=1))


def _last(ctx: Context) -> tuple[str, str, str, int]:
    return ctx.ti_key(ctx.tasks_per_dag - 1)


def _set_last(conn: sa.Connection, ctx: Context, **values: Any) -> None:
    dag, task, run, _ = _last(ctx)
    conn.execute(sa.update(TaskInstance).where(
        TaskInstance.dag_id == dag, TaskInstance.task_id == task, TaskInstance.run_id == run
    ).values(**values))


def _prepare_start(conn: sa.Connection, i: int, ctx: Context) -> None:
    _set_last(conn, ctx, state="scheduled", try_number=0)


def _prepare_finish(conn: sa.Connection, i: int, ctx: Context) -> None:
    _set_last(conn, ctx, state="running", try_number=1, start_date=BASE_TIME)


def _prepare_live_run(conn: sa.Connection, i: int, ctx: Context) -> None:
    restore_live_run(conn, ctx)


def _drop_bench_runs(conn: sa.Connection, i: int, ctx: Context) -> None:
    bench = TaskInstance.run_id.like("bench_%")
    conn.execute(sa.delete(TaskInstance).where(bench))
    conn.execute(sa.delete(DagRun).where(DagRun.run_id.like("bench_%")))


NOW = {"now": BASE_TIME}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("get_dag_run", ops.get_dag_run, lambda i, c: ((c.dag, c.live_run), {})),
        Scenario("get_variable", ops.get_variable, lambda i, c: (("var_005",), {})),
        Scenario("set_variable", ops.set_variable, lambda i, c: (("var_005", f"v{i}"), {})),
        Scenario(
            "xcom_push",
            ops.xcom_push,
            lambda i, c: ((c.dag, c.live_run, task_id(1), "bench",
                           {"i": i, "values": list(range(20))}), NOW),
        ),
        Scenario("xcom_pull", ops.xcom_pull, lambda i, c: ((c.dag, c.live_run, task_id(0)), {})),
        Scenario(
            "heartbeat",
            ops.heartbeat,
            lambda i, c: ((1,), {"now": BASE_TIME + datetime.timedelta(seconds=i)}),
        ),
        Scenario(
            "start_task",
            ops.start_task,
            lambda i, c: ((_last(c), "bench-host", 4242, 1), NOW),
            _prepare_start,
        ),
        Scenario(
            "finish_task",
            ops.finish_task,
            lambda i, c: ((_last(c), "success"),
                          {"now": BASE_TIME + datetime.timedelta(minutes=1)}),
            _prepare_finish,
        ),
        Scenario(
            "mini_scheduler",
            ops.mini_scheduler,
            lambda i, c: ((c.dag, c.live_run, task_id(0)), {}),
            _prepare_live_run,
            scaled=True,
        ),
        Scenario(
            "create_dag_run",
            ops.create_dag_run,
            lambda i, c: ((c.dag, f"bench_{i:06d}",
                           BASE_TIME + datetime.timedelta(seconds=i)), NOW),
            _drop_bench_runs,
            scaled=True,
        ),
        Scenario("find_zombies", ops.find_zombies, lambda i, c: ((300,), NOW)),
        Scenario(
            "clear_task_instances",
            ops.clear_task_instances,
            lambda i, c: ((c.dag, c.live_run), NOW),
            _prepare_live_run,
            scaled=True,
        ),
    ]
}

#: Operations whose mix drives the concurrent throughput runs (light, common calls).
THROUGHPUT_MIX = ("get_dag_run", "get_variable", "xcom_pull", "heartbeat")
