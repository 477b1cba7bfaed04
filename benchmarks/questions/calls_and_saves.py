"""What does a call return, and how is a change saved? (Ash)

Get a dag run, touch its task instances, change it and save it, in both
designs, counting each step's HTTP round trips, bytes (request + response)
and statements with the client's own counters (:mod:`session_proxy.stats`):

- **proxy**: a plain ``Session`` on a proxy engine with its default
  settings runs the ``get_dag_run`` query; ``dag_run.task_instances`` is a
  lazy load; ``state``/``queued_at`` are assigned and ``commit()`` saves them.
- **logical**: ``get_dag_run`` returns a detached ``DagRun``; touching
  ``task_instances`` raises ``DetachedInstanceError`` (recorded), so the
  client calls ``get_task_instances`` instead; the change is saved by the
  dedicated ``enqueue_dag_run`` operation, as the thread proposed.

Both designs run against the run's server and database, on a private DAG
(:mod:`.private_dag`); the saved values are read back directly to check
that each save happened.
"""

from __future__ import annotations

import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.orm.exc import DetachedInstanceError

import session_proxy
from session_proxy.logical import RemoteClient
from session_proxy.stats import StatsSnapshot

from ..workload import operations as ops
from ..workload.models import DagRun
from ..workload.seed import BASE_TIME
from . import Question, QuestionContext
from .private_dag import PrivateDag, private_dag, restore

KEY = "calls_and_saves"
STEPS = ("get", "lazy_load", "save")
#: Counters kept per step.
COUNTERS = ("round_trips", "background_round_trips", "request_bytes", "response_bytes",
            "statements")
TASKS = 10


def _delta(after: StatsSnapshot, before: StatsSnapshot) -> dict[str, float]:
    spent = after - before
    return {name: getattr(spent, name) for name in COUNTERS}


def _proxy_sample(engine: sa.Engine, dag: PrivateDag, now: datetime.datetime) -> dict:
    stats = session_proxy.stats(engine)
    steps: dict[str, dict] = {}
    with sessionmaker(bind=engine)() as session:
        before = stats.snapshot()
        run = session.scalars(
            sa.select(DagRun).where(DagRun.dag_id == dag.dag, DagRun.run_id == dag.run)
        ).one()
        steps["get"] = _delta(stats.snapshot(), before)
        before = stats.snapshot()
        loaded = len(run.task_instances)
        steps["lazy_load"] = _delta(stats.snapshot(), before)
        before = stats.snapshot()
        run.state = "queued"
        run.queued_at = now
        session.commit()
        steps["save"] = _delta(stats.snapshot(), before)
    return {"steps": steps, "loaded": loaded}


def _logical_sample(client: RemoteClient, dag: PrivateDag, now: datetime.datetime) -> dict:
    stats = client.stats
    steps: dict[str, dict] = {}
    before = stats.snapshot()
    run = client.call(ops.get_dag_run.name, (dag.dag, dag.run), {})
    steps["get"] = _delta(stats.snapshot(), before)
    try:
        len(run.task_instances)
        lazy_error = None
    except DetachedInstanceError as exc:
        lazy_error = type(exc).__name__
    before = stats.snapshot()
    loaded = len(client.call(ops.get_task_instances.name, (dag.dag, dag.run), {}))
    steps["lazy_load"] = _delta(stats.snapshot(), before)
    before = stats.snapshot()
    client.call(ops.enqueue_dag_run.name, (dag.dag, dag.run), {"now": now})
    steps["save"] = _delta(stats.snapshot(), before)
    return {"steps": steps, "loaded": loaded, "lazy_error": lazy_error,
            "returned": f"{type(run).__module__}.{type(run).__qualname__}"}


def _saved(direct: sa.Engine, dag: PrivateDag, now: datetime.datetime) -> bool:
    with direct.connect() as conn:
        state, queued_at = conn.execute(
            sa.select(DagRun.state, DagRun.queued_at)
            .where(DagRun.dag_id == dag.dag, DagRun.run_id == dag.run)
        ).one()
    if queued_at.tzinfo is None:  # SQLite keeps no zone; its stored times are UTC
        queued_at = queued_at.replace(tzinfo=datetime.timezone.utc)
    return state == "queued" and queued_at == now


def _summary(samples: list[dict]) -> dict[str, Any]:
    """Per step: the mean and the range of each counter over the samples."""
    steps = {}
    for step in STEPS:
        counters = {}
        for name in COUNTERS:
            values = [s["steps"][step][name] for s in samples]
            counters[name] = {"mean": sum(values) / len(values), "min": min(values),
                              "max": max(values)}
        steps[step] = counters
    return steps


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Round trips, bytes and statements of get -> lazy load -> modify -> save."""
    samples = 3 if ctx.quick else 10
    direct = sa.create_engine(ctx.db_url)
    engine = session_proxy.create_engine(ctx.client_config())
    client = RemoteClient(ctx.client_config())
    results: dict[str, list[dict]] = {"proxy": [], "logical": []}
    saved = {"proxy": True, "logical": True}
    try:
        with private_dag(direct, "q_calls_and_saves", TASKS) as dag:
            with engine.connect():
                pass  # the dialect's first-connect queries belong to no step
            client.call(ops.get_dag_run.name, (dag.dag, dag.run), {})
            for i in range(samples):
                for design in ("proxy", "logical"):
                    now = BASE_TIME + datetime.timedelta(minutes=i, seconds=len(results[design]))
                    with direct.begin() as conn:
                        restore(conn, dag)
                    if design == "proxy":
                        results[design].append(_proxy_sample(engine, dag, now))
                    else:
                        results[design].append(_logical_sample(client, dag, now))
                    saved[design] = saved[design] and _saved(direct, dag, now)
    finally:
        client.close()
        engine.dispose()
        direct.dispose()
    logical = results["logical"][-1]
    return {
        "samples": samples,
        "tasks": TASKS,
        "task_instances_loaded": {d: results[d][-1]["loaded"] for d in results},
        "logical_returns": logical["returned"],
        "logical_lazy_load_error": logical["lazy_error"],
        "logical_operations": {"get": "get_dag_run", "lazy_load": "get_task_instances",
                               "save": "enqueue_dag_run"},
        "saved": saved,
        "designs": {design: _summary(runs) for design, runs in results.items()},
    }


QUESTION = Question(
    key=KEY,
    asked_by="Ash Berlin-Taylor",
    title="What does a call return, and how is a change saved?",
    measure=measure,
)
