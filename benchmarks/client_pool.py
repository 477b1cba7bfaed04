"""Client processes for the throughput cells: each client its own process, engine or client.

Threads in one Python process share one GIL, so a throughput run with
client threads measures the client process as much as the server.
:class:`ClientPool` starts ``size`` worker processes once (``spawn``: the
bench process runs relay threads and must not be forked) and reuses them
for every throughput cell, since starting 32 Python processes per cell
would cost more than the cell.  For one cell, :meth:`ClientPool.run`:

1. tells ``clients`` workers to build a :class:`~session_proxy_bench.workload.modes.ModeRunner`
   of the cell's mode (its own engine or logical client, pool of 2) and
   warm it (first connect, one call);
2. once all are ready, sends each the same deadline (``time.monotonic``
   is system-wide on Linux, so one clock serves every process);
3. each calls the throughput mix (:func:`throughput_calls`) in a loop until
   the deadline, timing every call, and sends back its pid, its latencies
   and its errors by kind, then closes its runner.

Each client heartbeats a job of its own (:func:`ensure_client_jobs`), as
each Airflow task's job does: clients contend for no row lock, so a
throughput cell measures serving, not one lock queue.  A cell whose
clients cannot start (the server does not answer in time) is recorded
with no calls and the failures counted as errors, and the run goes on.

The workers take no part in the latency cells; they wait on their pipe.
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from .processes import join_or_kill
from .scenarios import THROUGHPUT_MIX, Context
from .workload import operations as ops
from .workload.models import Job
from .workload.modes import ModeRunner
from .workload.seed import BASE_TIME

#: Seconds a worker may take to start, build its runner and warm it.
START_TIMEOUT = 120.0
#: Client ``i`` heartbeats job ``CLIENT_JOB_BASE + i + 1`` (the seed's jobs are 1, 2, ...).
CLIENT_JOB_BASE = 1000


def ensure_client_jobs(direct: sa.Engine, clients: int) -> None:
    """Give each of ``clients`` throughput clients a job row of its own."""
    wanted = set(range(CLIENT_JOB_BASE + 1, CLIENT_JOB_BASE + clients + 1))
    with direct.begin() as conn:
        have = set(conn.scalars(sa.select(Job.id).where(Job.id.in_(wanted))))
        missing = sorted(wanted - have)
        if missing:
            conn.execute(sa.insert(Job), [
                {"id": job, "job_type": "LocalTaskJob", "state": "running",
                 "hostname": f"bench-client-{job - CLIENT_JOB_BASE}", "start_date": BASE_TIME,
                 "latest_heartbeat": BASE_TIME} for job in missing])


@dataclasses.dataclass(frozen=True)
class ClientSpec:
    """What one worker needs to build its runner for a cell."""

    mode: str
    db_url: str
    server_url: str | None
    token: str | None
    verify: bool | str
    tasks_per_dag: int
    runs_per_dag: int


def throughput_calls(ctx: Context) -> list[Callable[[ModeRunner, int, int], Any]]:
    """The light operation mix of the throughput runs, one callable each."""
    table = {
        "get_dag_run": lambda r, job, n: r.call(ops.get_dag_run, ctx.dag, ctx.live_run),
        "get_variable": lambda r, job, n: r.call(ops.get_variable, "var_005"),
        "xcom_pull": lambda r, job, n: r.call(ops.xcom_pull, ctx.dag, ctx.live_run, "t000"),
        "heartbeat": lambda r, job, n: r.call(
            ops.heartbeat, job, now=BASE_TIME + datetime.timedelta(microseconds=n)),
    }
    return [table[name] for name in THROUGHPUT_MIX]


def _serve(index: int, pipe: Any) -> None:
    """A worker: one cell per ``("cell", spec)`` message until ``("stop",)``."""
    import os

    while True:
        message = pipe.recv()
        if message[0] == "stop":
            return
        spec: ClientSpec = message[1]
        try:
            runner = ModeRunner(spec.mode, db_url=spec.db_url, server_url=spec.server_url,
                                token=spec.token, verify=spec.verify, pool_size=2)
            runner.warm()
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
            continue
        pipe.send(("ready", os.getpid()))
        deadline = pipe.recv()[1]
        calls = throughput_calls(Context(tasks_per_dag=spec.tasks_per_dag,
                                         runs_per_dag=spec.runs_per_dag))
        latencies: list[float] = []
        errors: Counter = Counter()
        n = 0
        try:
            while time.monotonic() < deadline:
                call = calls[(index + n) % len(calls)]
                started = time.perf_counter()
                try:
                    call(runner, CLIENT_JOB_BASE + index + 1, n)
                    latencies.append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - counted by kind
                    errors[type(exc).__name__] += 1
                n += 1
        finally:
            runner.close()
            pipe.send(("done", os.getpid(), latencies, dict(errors)))


@dataclasses.dataclass
class CellResult:
    """What the clients of one cell did."""

    pids: list[int]
    latencies: list[float]
    errors: Counter
    seconds: float


class ClientPool:
    """``size`` spawned client processes, reused cell after cell."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes = []
        self._processes = []
        for index in range(size):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(index, child), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    @property
    def size(self) -> int:
        return len(self._processes)

    def run(self, spec: ClientSpec, clients: int, seconds: float) -> CellResult:
        """``clients`` processes calling the mix of ``spec`` for ``seconds``."""
        if not 1 <= clients <= self.size:
            raise ValueError(f"clients must be 1..{self.size}, got {clients}")
        pipes = self._pipes[:clients]
        for pipe in pipes:
            pipe.send(("cell", spec))
        ready, failures = [], []
        for pipe in pipes:
            if not pipe.poll(START_TIMEOUT):
                raise RuntimeError(f"{spec.mode}: a client process did not get ready")
            answer = pipe.recv()
            if answer[0] == "ready":
                ready.append(pipe)
            else:
                failures.append(answer[1])
        if failures:
            # The ready ones wait for a deadline: give them one in the past.
            for pipe in ready:
                pipe.send(("go", 0.0))
            for pipe in ready:
                pipe.recv()
            return CellResult([], [], Counter(f"start: {failure}" for failure in failures),
                              0.0)
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        for pipe in pipes:
            pipe.send(("go", deadline))
        pids, latencies, errors = [], [], Counter()
        for pipe in pipes:
            if not pipe.poll(seconds + START_TIMEOUT):
                raise RuntimeError(f"{spec.mode}: a client process did not finish")
            _, pid, found, failed = pipe.recv()
            pids.append(pid)
            latencies.extend(found)
            errors.update(failed)
        return CellResult(pids, latencies, errors, time.perf_counter() - started)

    def close(self) -> None:
        """Stop every worker."""
        for pipe in self._pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        join_or_kill(self._processes)
        for pipe in self._pipes:
            pipe.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
