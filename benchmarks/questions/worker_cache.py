"""Fine-grained calls are fast and can be cached in workers: the worker-side cache, measured.

Asked by Jarek.  The cache is :class:`session_proxy.cache.ReadCache`: in the
logical client (``RemoteClient(cache=...)``), and around the same read run
on a proxy (or direct) engine's session (``ReadCache.cached``).  Three
measurements, each on freshly seeded workload rows:

- **reads**: a worker runs ``tasks`` tasks back to back; each task reads
  three variables and one connection, drawn with a fixed seed and a skew
  (variable ``i`` has weight ``1/(i+1)``, as a few settings are read by
  most tasks).  Task time is simulated: the cache's clock advances
  ``TASK_SECONDS`` per task, so a TTL means the same thing on any machine.
  Per mode, the same reads run without and with the cache (TTL
  ``TTL_SECONDS``): every read's latency, the round trips, the hits.
- **hit rate by TTL**: the same reads through the logical client for
  several TTLs (only misses reach the server).
- **staleness**: reader processes (one logical, one proxy) poll a variable
  through a cache with a short real-time TTL while this process, another
  client, changes it now and then.  For each change, each reader's delay
  until it returned that value or a later one; the bound to compare with is
  the TTL.
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from session_proxy.cache import CacheStats, ReadCache
from session_proxy.logical import RemoteClient

from ..processes import join_or_kill
from ..workload import operations as ops
from ..workload.models import Variable
from ..workload.modes import MODES, ModeRunner
from . import Question, QuestionContext
from .workload_tables import fresh_workload, reseed

TASK_SECONDS = 5.0
TTL_SECONDS = 60.0
HIT_RATE_TTLS = (5.0, 30.0, 60.0, 300.0, 900.0)
VARIABLES, CONNECTIONS = 20, 5
STALE_KEY = "var_000"
START_TIMEOUT = 60.0


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"tasks": 40, "staleness_ttl": 0.3, "changes": 3}
    return {"tasks": 300, "staleness_ttl": 1.0, "changes": 10}


class TaskClock:
    """Simulated time: :meth:`next_task` moves it on by one task's duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def next_task(self) -> None:
        self.now += TASK_SECONDS


def read_plan(tasks: int) -> list[list[tuple[str, str]]]:
    """Per task, its reads: ``(operation name, key)``; the same every run."""
    rng = random.Random(18)
    weights = [1 / (i + 1) for i in range(VARIABLES)]
    plan = []
    for _ in range(tasks):
        keys = rng.choices(range(VARIABLES), weights=weights, k=3)
        plan.append([("get_variable", f"var_{k:03d}") for k in keys]
                    + [("get_connection", f"conn_{rng.randrange(CONNECTIONS)}")])
    return plan


#: The reads the cache keeps and the writes that drop them, by operation name.
CACHED_READS = {ops.get_variable.name: [ops.set_variable.name], ops.get_connection.name: []}


def _new_cache(ttl: float, clock: Callable[[], float] = time.monotonic) -> ReadCache:
    return ReadCache(ttl, reads=CACHED_READS, clock=clock)


class Reader:
    """The reads of one mode, cached or not; counts its round trips."""

    def __init__(self, mode: str, db_url: str, server_url: str, token: str | None,
                 cache: ReadCache | None, verify: bool | str = True) -> None:
        self.mode = mode
        self.cache = cache
        self.runner: ModeRunner | None = None
        self.client: RemoteClient | None = None
        if mode == "logical":
            # The logical client's own cache: RemoteClient(cache=...).
            self.client = RemoteClient(server_url, token=token, verify=verify, cache=cache)
            self._reads = {name: functools.partial(self._logical, operation.name)
                           for name, operation in (("get_variable", ops.get_variable),
                                                   ("get_connection", ops.get_connection))}
        else:
            # The same operations run on this process's session of the mode's engine,
            # wrapped by ReadCache.cached.
            self.runner = ModeRunner(mode, db_url=db_url, server_url=server_url, token=token,
                                     verify=verify)
            plain = {"get_variable": functools.partial(self.runner.call, ops.get_variable),
                     "get_connection": functools.partial(self.runner.call, ops.get_connection)}
            self._reads = plain if cache is None else {
                name: cache.cached(read, name=getattr(ops, name).name)
                for name, read in plain.items()}

    def _logical(self, name: str, key: str) -> Any:
        assert self.client is not None
        return self.client.call(name, (key,), {})

    def read(self, name: str, key: str) -> Any:
        return self._reads[name](key)

    def round_trips(self) -> int | None:
        if self.client is not None:
            return self.client.stats.round_trips
        assert self.runner is not None
        return None if self.mode == "direct" else self.runner.snapshot().round_trips

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.runner is not None:
            self.runner.close()


def run_reads(mode: str, db_url: str, server_url: str, token: str | None,
              plan: list[list[tuple[str, str]]], ttl: float | None,
              verify: bool | str = True) -> dict[str, Any]:
    """The plan's reads in ``mode``, through a cache of ``ttl`` (None: no cache)."""
    clock = TaskClock()
    cache = _new_cache(ttl, clock) if ttl is not None else None
    reader = Reader(mode, db_url, server_url, token, cache, verify)
    try:
        reader.read("get_variable", "var_019")  # connect; not in the plan's statistics
        if cache is not None:
            cache.invalidate()
            cache.stats = CacheStats()  # count the plan's reads only
        before = reader.round_trips()
        latencies = []
        for task in plan:
            for name, key in task:
                started = time.perf_counter()
                reader.read(name, key)
                latencies.append(round(time.perf_counter() - started, 7))
            clock.next_task()
        after = reader.round_trips()
    finally:
        reader.close()
    stats = cache.stats if cache is not None else None
    return {
        "reads": len(latencies),
        "latency_s": latencies,
        "round_trips": None if before is None else after - before,
        "hits": stats.hits if stats else 0,
        "misses": stats.misses if stats else len(latencies),
        "expired": stats.expired if stats else 0,
        "hit_rate": stats.hit_rate if stats else None,
    }


# -- staleness: readers in other processes ------------------------------------------------


def _stale_reader(mode: str, db_url: str, server_url: str, token: str | None,
                  verify: bool | str, ttl: float, ready: Any, stop: Any, out: Any) -> None:
    """Poll ``STALE_KEY`` through a cache of ``ttl`` s; report when each value was first seen."""
    cache = _new_cache(ttl)
    reader = Reader(mode, db_url, server_url, token, cache, verify)
    seen: dict[str, float] = {}
    polls = 0
    try:
        reader.read("get_variable", STALE_KEY)
        ready.release()
        while not stop.is_set():
            value = reader.read("get_variable", STALE_KEY)
            polls += 1
            seen.setdefault(value, time.monotonic())
            time.sleep(0.005)
    finally:
        reader.close()
        out.put({"mode": mode, "seen": seen, "polls": polls, "hits": cache.stats.hits,
                 "max_age_served_s": cache.stats.max_age_served})


def measure_staleness(db_url: str, server_url: str, token: str | None, ttl: float,
                      changes: int, verify: bool | str = True) -> dict[str, Any]:
    """Change ``STALE_KEY`` ``changes`` times; each reader's delay to see each change."""
    context = multiprocessing.get_context("spawn")
    ready, stop, out = context.Semaphore(0), context.Event(), context.Queue()
    modes = ("logical", "proxy")
    readers = [context.Process(target=_stale_reader, daemon=True,
                               args=(mode, db_url, server_url, token, verify, ttl, ready, stop,
                                     out))
               for mode in modes]
    engine = sa.create_engine(db_url)
    written: dict[str, float] = {}
    rng = random.Random(5)
    try:
        for process in readers:
            process.start()
        for _ in readers:
            if not ready.acquire(timeout=START_TIMEOUT):
                raise RuntimeError("worker_cache: a reader process did not start")
        for change in range(changes):
            time.sleep(ttl * rng.uniform(0.3, 1.3))  # at any point of an entry's life
            value = f"changed {change}"
            with engine.begin() as conn:
                conn.execute(sa.update(Variable).where(Variable.key == STALE_KEY)
                             .values(val=value))
            written[value] = time.monotonic()
        time.sleep(ttl * 1.5)  # the last change reaches every reader
        stop.set()
        reports = [out.get(timeout=START_TIMEOUT) for _ in readers]
    finally:
        stop.set()
        join_or_kill(readers)
        engine.dispose()
    result: dict[str, Any] = {"ttl_s": ttl, "changes": changes, "readers": {}}
    order = list(written)  # the values, in the order they were written
    for report in reports:
        seen = report["seen"]
        delays = []
        for index, value in enumerate(order):
            # Fresh again once the reader returns this value or a later one.
            first = [seen[later] for later in order[index:] if later in seen]
            delays.append(round(min(first) - written[value], 4) if first else None)
        result["readers"][report["mode"]] = {
            "delays_s": delays,
            "never_caught_up": sum(d is None for d in delays),
            # Changes overwritten before the reader's entry expired: it never saw them.
            "superseded": sum(value not in seen for value in order),
            "polls": report["polls"],
            "hits": report["hits"],
            "max_age_served_s": round(report["max_age_served_s"], 4),
        }
    return result


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Reads without and with the cache per mode, hit rate by TTL, staleness."""
    settings = _settings(ctx.quick)
    plan = read_plan(settings["tasks"])
    engine = sa.create_engine(ctx.db_url)
    try:
        with fresh_workload(engine):
            reseed(engine, dags=1, runs_per_dag=1, tasks_per_dag=2)
            modes = {}
            for mode in MODES:
                modes[mode] = {
                    "uncached": run_reads(mode, ctx.db_url, ctx.server_url, ctx.token, plan,
                                          None, ctx.verify),
                    "cached": run_reads(mode, ctx.db_url, ctx.server_url, ctx.token, plan,
                                        TTL_SECONDS, ctx.verify),
                }
            hit_rates = {}
            for ttl in HIT_RATE_TTLS:
                run = run_reads("logical", ctx.db_url, ctx.server_url, ctx.token, plan, ttl,
                                ctx.verify)
                hit_rates[str(ttl)] = {"hit_rate": run["hit_rate"], "hits": run["hits"],
                                       "misses": run["misses"], "expired": run["expired"]}
            staleness = measure_staleness(ctx.db_url, ctx.server_url, ctx.token,
                                          settings["staleness_ttl"], settings["changes"],
                                          ctx.verify)
    finally:
        engine.dispose()
    return {
        "tasks": settings["tasks"],
        "reads_per_task": len(plan[0]) if plan else 0,
        "task_seconds": TASK_SECONDS,
        "ttl_s": TTL_SECONDS,
        "variables": VARIABLES,
        "connections": CONNECTIONS,
        "modes": modes,
        "hit_rate_by_ttl": hit_rates,
        "staleness": staleness,
    }


QUESTION = Question(
    key="worker_cache",
    asked_by="Jarek",
    title="Fine-grained calls are fast and can be cached in workers",
    measure=measure,
)
