"""Transaction integrity: workers finishing tasks of one dag run at once (Jarek).

A private DAG (:mod:`.private_dag`) fans out to ``workers x tasks_per_worker``
middle tasks, all running, and fans in to a last task (``all_done``).  In
each mode (direct, proxy, logical) ``workers`` separate processes each
finish their share of the middle tasks, every one as Airflow's worker does:
``finish_task`` (one transaction, locking the task instance) then
``mini_scheduler`` (another, locking the dag run ``FOR UPDATE`` and
scheduling what became ready).  They start together at a barrier.

Measured per transaction, client side: wall time, attempts, and the
transaction's open time (the lock hold: ModeRunner's ``transaction_seconds``,
counted by engine events in direct mode and reported by the server in the
others).  A transaction failing with a deadlock, a serialization failure, a
lock timeout or SQLite's "database is locked" is retried (up to
:data:`MAX_ATTEMPTS`), and counted.  The lock wait of a transaction is its
wall time minus the median of the same transaction run by one worker alone
(same mode, same DAG), so it also holds waiting for a CPU on a shared
machine.  On PostgreSQL and MySQL a sampler also reads from the database
how many sessions wait on a lock (``pg_stat_activity.wait_event_type =
'Lock'``, ``information_schema.innodb_trx`` in ``LOCK WAIT``), which gives
the database's own count of lock-wait seconds.  SQLite has no row locks: one
writer at a time holds the whole database.

The final state is checked directly in the database: every middle task
finished exactly once (its state, and one ``success`` log row), and the last
task scheduled exactly once (its state, and how many ``mini_scheduler``
calls returned it).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from session_proxy import background

from ..stats import median
from ..workload import operations as ops
from ..workload.models import Log, TaskInstance
from ..workload.modes import MODES, ModeRunner
from ..workload.seed import BASE_TIME
from . import Question, QuestionContext
from .private_dag import PrivateDag, private_dag, restore

KEY = "integrity"
MAX_ATTEMPTS = 10
#: Longest wait for the workers of one phase (a pool whose workers cannot start
#: would otherwise be waited for forever).
WAIT_SECONDS = 300
TRANSACTIONS = ("finish_task", "mini_scheduler")
FINISHED_AT = BASE_TIME

#: How each backend tells how many sessions wait on a lock right now.
LOCK_WAITERS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mysql": "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'",
}

_barrier: Any = None


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _transient(exc: BaseException) -> str | None:
    """``deadlock``, ``serialization``, ``lock_timeout`` or ``busy``; None if not transient."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    errno = getattr(orig, "errno", None)
    if errno is None and orig is not None and getattr(orig, "args", None):
        errno = orig.args[0] if isinstance(orig.args[0], int) else None
    text = str(exc).lower()
    if sqlstate == "40P01" or errno == 1213 or "deadlock" in text:
        return "deadlock"
    if sqlstate == "40001" or "could not serialize" in text:
        return "serialization"
    if errno == 1205 or sqlstate == "55P03" or "lock wait timeout" in text:
        return "lock_timeout"
    if "database is locked" in text or "database table is locked" in text:
        return "busy"
    return None


def _transaction(runner: ModeRunner, name: str, call: Callable[[], Any]) -> tuple[dict, Any]:
    """Run ``call`` until it commits, retrying transient failures; its record and result."""
    failures: Counter[str] = Counter()
    before = runner.snapshot()
    started = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        try:
            result = call()
            break
        except Exception as exc:
            kind = _transient(exc)
            if kind is None or attempts >= MAX_ATTEMPTS:
                raise
            failures[kind] += 1
            time.sleep(0.005 * attempts)
    latency = time.perf_counter() - started
    # A proxied transaction that only read commits in the background; its
    # open time arrives with that commit's answer.
    background.drain(30)
    spent = runner.snapshot() - before
    return {"transaction": name, "latency_s": latency, "txn_s": spent.transaction_seconds,
            "attempts": attempts, "failures": dict(failures)}, result


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """One worker process: finish each task of ``job["tasks"]``, then run the mini scheduler."""
    runner = ModeRunner(job["mode"], db_url=job["db_url"], server_url=job["server_url"],
                        token=job["token"], verify=job["verify"], pool_size=1)
    dag, run = job["dag"], job["run"]
    try:
        runner.call(ops.get_dag_run, dag, run)  # connected, imported, warm
        if job["together"]:
            _barrier.wait(timeout=120)
        records: list[dict] = []
        scheduled: list[str] = []
        for task in job["tasks"]:
            key = (dag, task, run, -1)
            record, _ = _transaction(runner, "finish_task", lambda key=key: runner.call(
                ops.finish_task, key, "success", now=FINISHED_AT))
            records.append(record)
            record, ready = _transaction(runner, "mini_scheduler", lambda task=task: runner.call(
                ops.mini_scheduler, dag, run, task))
            records.append(record)
            scheduled.extend(ready)
        return {"transactions": records, "scheduled": scheduled,
                "client_retries": runner.snapshot().retries}
    finally:
        runner.close()


class LockSampler:
    """Counts, every ``interval`` seconds, the database sessions waiting on a lock."""

    def __init__(self, engine: sa.Engine, interval: float = 0.005) -> None:
        self.query = LOCK_WAITERS.get(engine.dialect.name)
        self.engine = engine
        self.interval = interval
        self.samples = 0
        self.waiting = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockSampler:
        if self.query is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.query is not None
        engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        started = time.perf_counter()
        with engine.connect() as conn:
            while not self._stop.is_set():
                self.waiting += conn.exec_driver_sql(self.query).scalar() or 0
                self.samples += 1
                time.sleep(self.interval)
        self.seconds = time.perf_counter() - started

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def lock_wait_seconds(self) -> float | None:
        """Session-seconds spent waiting on locks, or None where not sampled."""
        if self.query is None or not self.samples:
            return None
        return self.waiting * self.seconds / self.samples


def _final_state(direct: sa.Engine, dag: PrivateDag, results: list[dict]) -> dict[str, Any]:
    with direct.connect() as conn:
        states = dict(conn.execute(
            sa.select(TaskInstance.task_id, TaskInstance.state)
            .where(TaskInstance.dag_id == dag.dag, TaskInstance.run_id == dag.run)
        ).all())
        finishes = Counter(conn.execute(
            sa.select(Log.task_id).where(Log.dag_id == dag.dag, Log.event == "success")
        ).scalars())
    returned = sum(r["scheduled"].count(dag.last) for r in results)
    finished_once = all(states.get(t) == "success" and finishes[t] == 1 for t in dag.middle)
    return {
        "every_task_finished_once": finished_once,
        "last_task_state": states.get(dag.last),
        "last_task_scheduled_by": returned,
        "correct": finished_once and states.get(dag.last) == "scheduled" and returned == 1,
    }


def _job(ctx: QuestionContext, mode: str, dag: PrivateDag, tasks: list[str],
         together: bool) -> dict[str, Any]:
    return {"mode": mode, "db_url": ctx.db_url, "server_url": ctx.server_url,
            "token": ctx.token, "verify": ctx.verify, "dag": dag.dag, "run": dag.run,
            "tasks": tasks, "together": together}


def _measure_mode(ctx: QuestionContext, pool: Any, direct: sa.Engine, dag: PrivateDag,
                  mode: str, workers: int, per_worker: int) -> dict[str, Any]:
    with direct.begin() as conn:
        restore(conn, dag, running=len(dag.middle))
    alone = pool.apply_async(
        run_worker, (_job(ctx, mode, dag, dag.middle[:per_worker], False),)
    ).get(WAIT_SECONDS)
    with direct.begin() as conn:
        restore(conn, dag, running=len(dag.middle))
    jobs = [_job(ctx, mode, dag, dag.middle[w::workers], True) for w in range(workers)]
    started = time.perf_counter()
    with LockSampler(direct) as sampler:
        results = pool.map_async(run_worker, jobs, chunksize=1).get(WAIT_SECONDS)
    wall = time.perf_counter() - started
    return {
        "alone": alone["transactions"],
        "together": [t for r in results for t in r["transactions"]],
        "client_retries": sum(r["client_retries"] for r in results),
        "wall_s": wall,
        "db_lock_wait_s": sampler.lock_wait_seconds(),
        "db_lock_samples": sampler.samples,
        "final_state": _final_state(direct, dag, results),
    }


def lock_waits(mode_result: dict[str, Any], transaction: str) -> list[float]:
    """Each concurrent ``transaction``'s wall time beyond its uncontended median."""
    alone = [t["latency_s"] for t in mode_result["alone"] if t["transaction"] == transaction]
    baseline = median(alone)
    return [max(0.0, t["latency_s"] - baseline) for t in mode_result["together"]
            if t["transaction"] == transaction]


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Lock waits, lock holds, failures and the final state, per mode."""
    workers = 3 if ctx.quick else 6
    per_worker = 3 if ctx.quick else 6
    direct = sa.create_engine(ctx.db_url)
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(workers)
    modes: dict[str, Any] = {}
    try:
        with private_dag(direct, "q_integrity", workers * per_worker + 2) as dag, \
                spawn.Pool(workers, initializer=_init_worker, initargs=(barrier,)) as pool:
            for mode in MODES:
                modes[mode] = _measure_mode(ctx, pool, direct, dag, mode, workers, per_worker)
    finally:
        direct.dispose()
    return {
        "backend": direct.dialect.name,
        "workers": workers,
        "tasks_per_worker": per_worker,
        "max_attempts": MAX_ATTEMPTS,
        "modes": modes,
    }


QUESTION = Question(
    key=KEY,
    asked_by="Jarek Potiuk",
    title="Does routing the calls keep transactions intact when workers finish tasks "
          "of one dag run at once?",
    measure=measure,
)
