"""Why route the scheduler at all; no, partial or full isolation: a mixed deployment, measured.

Asked by Andrew and Ash (why route the scheduler) and Jarek (no, partial or
full isolation).  One scheduler process and ``workers`` worker processes
(separate processes, ``spawn``, as deployed) run at once against the
workload's database for a fixed time, under four options:

- ``none``: workers and scheduler direct (no isolation);
- ``proxy``: workers through the proxy, scheduler direct (partial);
- ``logical``: workers through the logical API, scheduler direct (partial);
- ``full``: workers and scheduler through the proxy (full isolation).

A worker repeats one task's life: ``get_dag_run``, ``get_variable``,
``start_task``, ``heartbeat``, ``xcom_pull``, ``xcom_push``,
``finish_task``, on task instances of its own (the live run of one DAG).
The scheduler repeats ``create_dag_run``, ``mini_scheduler`` and
``find_zombies``. Each option starts from the same seeded rows and (but
``none``, which has none) a freshly started server, serving HTTPS with a
certificate of its own when the run's server does (its clients verify it);
the same processes run every option, one after the other. Recorded per
option: every call's latency per role (a bounded, evenly spaced subsample is
kept), calls and errors per role, operations per second, the database
connections held (``pg_stat_activity`` / MySQL's processlist, sampled while
it runs, less those held before the measurement began; None on SQLite) and
the server's CPU time (user + system, its process tree).
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from session_proxy_server.testing import ServerProcess

from ..processes import join_or_kill, tree_cpu_seconds
from ..workload import OPERATIONS_MODULE
from ..workload import operations as ops
from ..workload.modes import ModeRunner
from ..workload.seed import BASE_TIME, dag_id, run_id, task_id
from . import Question, QuestionContext
from .workload_tables import fresh_workload, reseed

#: option -> (how workers reach the database, how the scheduler does)
OPTIONS: dict[str, tuple[str, str]] = {
    "none": ("direct", "direct"),
    "proxy": ("proxy", "direct"),
    "logical": ("logical", "direct"),
    "full": ("proxy", "proxy"),
}
WORKER_OPERATIONS = ("get_dag_run", "get_variable", "start_task", "heartbeat", "xcom_pull",
                     "xcom_push", "finish_task")
SCHEDULER_OPERATIONS = ("create_dag_run", "mini_scheduler", "find_zombies")
#: Latencies kept per role and option (evenly spaced over the run).
KEPT_LATENCIES = 2000
DAGS, RUNS_PER_DAG = 2, 2
START_TIMEOUT = 60.0


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"workers": 2, "seconds": 1.0, "tasks_per_dag": 12}
    return {"workers": 4, "seconds": 6.0, "tasks_per_dag": 40}


# -- what each process does --------------------------------------------------------------


def _worker_cycle(worker: int, workers: int, tasks_per_dag: int
                  ) -> Callable[[ModeRunner, int], list[tuple[str, Callable[[], Any]]]]:
    """One worker's calls for its ``n``-th task."""
    dag, run = dag_id(worker % DAGS), run_id(RUNS_PER_DAG - 1)
    per_dag = max(1, -(-workers // DAGS))
    mine = [t for t in range(1, tasks_per_dag) if t % per_dag == worker // DAGS] or [1]
    job = worker % (2 * DAGS) + 1

    def cycle(runner: ModeRunner, n: int) -> list[tuple[str, Callable[[], Any]]]:
        ti = (dag, task_id(mine[n % len(mine)]), run, -1)
        now = BASE_TIME + datetime.timedelta(seconds=n)
        return [
            ("get_dag_run", lambda: runner.call(ops.get_dag_run, dag, run)),
            ("get_variable", lambda: runner.call(ops.get_variable, f"var_{n % 20:03d}")),
            ("start_task", lambda: runner.call(ops.start_task, ti, f"worker-{worker}",
                                               os.getpid(), job_id=job, now=now)),
            ("heartbeat", lambda: runner.call(ops.heartbeat, job, now=now)),
            ("xcom_pull", lambda: runner.call(ops.xcom_pull, dag, run, task_id(0))),
            ("xcom_push", lambda: runner.call(ops.xcom_push, dag, run, ti[1], "return_value",
                                              {"n": n}, now=now)),
            ("finish_task", lambda: runner.call(ops.finish_task, ti, "success",
                                                now=now + datetime.timedelta(seconds=1))),
        ]

    return cycle


def _scheduler_cycle(runner: ModeRunner, n: int) -> list[tuple[str, Callable[[], Any]]]:
    """The scheduler loop's calls, its ``n``-th time round."""
    dag = dag_id(n % DAGS)
    logical_date = BASE_TIME + datetime.timedelta(minutes=n)
    return [
        ("create_dag_run", lambda: runner.call(ops.create_dag_run, dag,
                                               f"iso_{os.getpid()}_{n:06d}", logical_date,
                                               now=logical_date)),
        ("mini_scheduler", lambda: runner.call(ops.mini_scheduler, dag,
                                               run_id(RUNS_PER_DAG - 1), task_id(0))),
        ("find_zombies", lambda: runner.call(ops.find_zombies, 300, now=BASE_TIME)),
    ]


def _run_option(role: str, index: int, command: dict[str, Any], start: Any) -> dict[str, Any]:
    """One option in one process: warm up, wait for the start, loop until the deadline."""
    latencies: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    round_trips = 0
    runner = None
    try:
        try:
            runner = ModeRunner(command[role], db_url=command["db_url"],
                                server_url=command["server_url"], token=command["token"],
                                verify=command["verify"], pool_size=1)
            runner.call(ops.get_variable, "var_000")  # connect, first-connect queries
        finally:
            start.wait(START_TIMEOUT)  # a failed start is reported, not a hang
        cycle = (_worker_cycle(index, command["workers"], command["tasks_per_dag"])
                 if role == "worker" else _scheduler_cycle)
        before = runner.snapshot().round_trips
        deadline = time.monotonic() + command["seconds"]
        n = 0
        while time.monotonic() < deadline:
            for name, call in cycle(runner, n):
                started = time.perf_counter()
                try:
                    call()
                    latencies.setdefault(name, []).append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - counted by kind
                    errors[f"{name}: {type(exc).__name__}"] += 1
            n += 1
        round_trips = runner.snapshot().round_trips - before
    except Exception as exc:  # noqa: BLE001 - a process that fails reports it
        errors[f"start: {type(exc).__name__}: {exc}"[:200]] += 1
    finally:
        if runner is not None:
            runner.close()
    return {"role": role, "latencies": latencies, "errors": dict(errors),
            "round_trips": round_trips}


def _process(role: str, index: int, commands: Any, start: Any, out: Any) -> None:
    """A worker or the scheduler process: run each option it is sent, until None."""
    while (command := commands.get()) is not None:
        out.put(_run_option(role, index, command, start))


# -- what the measuring process does ------------------------------------------------------


_CONNECTIONS_SQL = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "mysql": "SELECT COUNT(*) FROM information_schema.processlist "
             "WHERE db = DATABASE() AND id <> CONNECTION_ID()",
}


class ConnectionCounter:
    """Samples how many connections the database holds, from the database, in a thread."""

    def __init__(self, engine: sa.Engine, interval: float = 0.1) -> None:
        self.sql = _CONNECTIONS_SQL.get(engine.dialect.name)
        self.engine = engine
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self) -> int | None:
        """Connections to the database now, other than this one (None on SQLite)."""
        if self.sql is None:
            return None
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql(self.sql).scalar_one())

    def start(self) -> None:
        """Start sampling in a thread, every :attr:`interval` seconds."""
        if self.sql is None:
            return
        connection = self.engine.connect()

        def run() -> None:
            try:
                while not self._stop.wait(self.interval):
                    self.samples.append(int(connection.exec_driver_sql(self.sql).scalar_one()))
                    connection.rollback()  # a fresh snapshot of the activity view each time
            finally:
                connection.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _kept(values: list[float]) -> list[float]:
    """At most :data:`KEPT_LATENCIES` values, evenly spaced, in seconds rounded to 1 µs."""
    step = max(1, -(-len(values) // KEPT_LATENCIES))
    return [round(v, 6) for v in values[::step]]


def _role_summary(reports: list[dict], seconds: float) -> dict[str, Any]:
    latencies = [v for r in reports for values in r["latencies"].values() for v in values]
    per_operation: Counter[str] = Counter()
    for report in reports:
        per_operation.update({name: len(values) for name, values in report["latencies"].items()})
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    return {
        "processes": len(reports),
        "calls": len(latencies),
        "throughput": len(latencies) / seconds if seconds else None,
        "calls_by_operation": dict(sorted(per_operation.items())),
        "errors": dict(errors),
        "round_trips": sum(r["round_trips"] for r in reports),
        "latency_s": _kept(latencies),
    }


class Deployment:
    """The scheduler and worker processes, started once and sent one option at a time."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.roles = [("scheduler", 0)] + [("worker", w) for w in range(workers)]
        self.start = context.Barrier(len(self.roles) + 1)
        self.out = context.Queue()
        self.commands = [context.Queue() for _ in self.roles]
        self.processes = [
            context.Process(target=_process, args=(role, index, queue, self.start, self.out),
                            daemon=True)
            for (role, index), queue in zip(self.roles, self.commands, strict=True)]
        for process in self.processes:
            process.start()

    def run(self, command: dict[str, Any], started: Callable[[], None]
            ) -> tuple[list[dict], float]:
        """Run one option in every process; call ``started`` as they start; (reports, seconds)."""
        for queue in self.commands:
            queue.put(command)
        self.start.wait(START_TIMEOUT + 30)  # every process warmed up
        began = time.perf_counter()
        started()
        reports = [self.out.get(timeout=command["seconds"] + START_TIMEOUT)
                   for _ in self.processes]
        return reports, time.perf_counter() - began

    def close(self) -> None:
        for queue in self.commands:
            queue.put(None)
        join_or_kill(self.processes)


def run_option(option: str, deployment: Deployment, db_url: str,
               server: ServerProcess | None, settings: dict[str, Any]) -> dict[str, Any]:
    """One option of the deployment, from freshly seeded rows; its raw numbers."""
    workers_via, scheduler_via = OPTIONS[option]
    direct = sa.create_engine(db_url, poolclass=sa.pool.NullPool)  # holds none while idle
    counter = ConnectionCounter(direct)
    cpu_before: list[float] = []

    def started() -> None:
        counter.start()
        if server is not None:
            cpu_before.append(tree_cpu_seconds(server.process.pid))

    try:
        reseed(direct, dags=DAGS, runs_per_dag=RUNS_PER_DAG,
               tasks_per_dag=settings["tasks_per_dag"])
        command = {"worker": workers_via, "scheduler": scheduler_via, "db_url": db_url,
                   "server_url": server.url if server else None,
                   "token": server.token if server else None,
                   "verify": server.verify if server else True, **settings}
        try:
            reports, elapsed = deployment.run(command, started)
        finally:
            counter.stop()
        cpu = tree_cpu_seconds(server.process.pid) - cpu_before[0] if server else None
    finally:
        direct.dispose()
    worker = _role_summary([r for r in reports if r["role"] == "worker"], elapsed)
    scheduler = _role_summary([r for r in reports if r["role"] == "scheduler"], elapsed)
    through_server = (worker["calls"] if workers_via != "direct" else 0) + (
        scheduler["calls"] if scheduler_via != "direct" else 0)
    return {
        "workers_via": workers_via,
        "scheduler_via": scheduler_via,
        "seconds": elapsed,
        "worker": worker,
        "scheduler": scheduler,
        "connections": {
            "peak": max(counter.samples) if counter.samples else None,
            "median": statistics.median(counter.samples) if counter.samples else None,
            "samples": len(counter.samples),
        },
        "server_cpu_s": cpu,
        "server_calls": through_server,
        "server_requests": worker["round_trips"] + scheduler["round_trips"],
        "server_cpu_per_call_s": cpu / through_server if cpu is not None and through_server
        else None,
    }


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Every option, one after the other, on the run's database.

    ``none`` runs with no server at all; each other option on a freshly
    started one (an empty pool, a CPU count of its own).
    """
    settings = _settings(ctx.quick)
    tls = ctx.server_url.startswith("https:")
    engine = sa.create_engine(ctx.db_url, poolclass=sa.pool.NullPool)  # holds none while idle
    try:
        backend = engine.dialect.name
        others = ConnectionCounter(engine).count()  # held before this measurement: not ours
        options: dict[str, Any] = {}
        with fresh_workload(engine), \
                contextlib.closing(Deployment(settings["workers"])) as deployment, \
                tempfile.TemporaryDirectory() as tls_dir, \
                contextlib.ExitStack() as stack:
            server: ServerProcess | None = None
            for option, vias in OPTIONS.items():
                if vias != ("direct", "direct"):
                    if server is None:
                        server = stack.enter_context(
                            ServerProcess(ctx.db_url, "--operations", OPERATIONS_MODULE,
                                          tls_dir=Path(tls_dir) if tls else None))
                    else:
                        server.restart()
                options[option] = run_option(
                    option, deployment, ctx.db_url,
                    server if vias != ("direct", "direct") else None, settings)
    finally:
        engine.dispose()
    for option in options.values():
        peak = option["connections"]["peak"]
        option["connections"]["held"] = None if peak is None else peak - others
    return {
        "backend": backend,
        "tls": tls,
        "workers": settings["workers"],
        "seconds_per_option": settings["seconds"],
        "tasks_per_dag": settings["tasks_per_dag"],
        "worker_operations": list(WORKER_OPERATIONS),
        "scheduler_operations": list(SCHEDULER_OPERATIONS),
        "connections_counted": backend in _CONNECTIONS_SQL,
        "connections_of_others": others,
        "options": options,
    }


QUESTION = Question(
    key="isolation",
    asked_by="Andrew and Ash (why route the scheduler at all); Jarek (no, partial or full "
             "isolation)",
    title="Why route the scheduler at all, and no, partial or full isolation",
    measure=measure,
)
