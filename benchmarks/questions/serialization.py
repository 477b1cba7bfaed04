"""Serialization cost, and the slowdown of operations touching a few hundred rows (Andrew).

For each scale (10, 100 and 500 tasks, the workload's) a private DAG
(:mod:`.private_dag`) is written and three operations run once in the proxy
and the logical design against the run's server, with every HTTP request
and response body captured as sent:

- ``get_task_instances``: load every task instance of the run (the proxy
  runs the same query on a plain ``Session``): n rows back;
- ``mini_scheduler``: reads n task instances, writes the ready ones;
- ``create_dag_run``: writes a dag run and n task instances.

Then each captured body goes through the functions each side runs on it,
timed in this process, ``repeats`` times: the client's encoding (wire codec
+ JSON), the server's decoding (JSON, request validation, codec), the
server's encoding of the answer and the client's decoding of it.  In the
proxy the values are statement parameters and DBAPI rows
(:mod:`session_proxy.wire.codec`); in the logical design they are the
operation's arguments and result, ORM instances included
(:mod:`session_proxy.wire.values`; its decoding builds the detached
instances, where the proxy's yields rows SQLAlchemy then loads as it would
in-process).  Times are per call; the report divides by the rows.

Last, the end-to-end latency of the scaled operations (``mini_scheduler``,
``clear_task_instances``, ``create_dag_run``) in each mode at 0 ms RTT,
interleaved mode by mode, each call on the restored run, after one untimed call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

import session_proxy_server.requests_validation as validation
from session_proxy import values
from session_proxy.transport import HTTPTransport
from session_proxy.wire import codec, protocol

from ..workload import operations as ops
from ..workload.models import TaskInstance
from ..workload.modes import MODES, ModeRunner
from ..workload.seed import BASE_TIME
from . import Question, QuestionContext
from .private_dag import PrivateDag, private_dag, restore

KEY = "serialization"
SCALES = (10, 100, 500)
OPERATIONS = ("get_task_instances", "mini_scheduler", "create_dag_run")
PHASES = ("client_encode", "server_decode", "server_encode", "client_decode")
LATENCY_OPERATIONS = ("mini_scheduler", "clear_task_instances", "create_dag_run")
NEW_RUN = "q_serialization_new"

Exchange = tuple[bytes, bytes]


@contextlib.contextmanager
def captured(transport: HTTPTransport) -> Iterator[list[Exchange]]:
    """Every (request body, response body) the transport exchanges inside the block."""
    exchanges: list[Exchange] = []
    original = transport.exchange

    def exchange(url: str, payload: bytes, statements: int) -> Any:
        response, body = original(url, payload, statements)
        exchanges.append((payload, response.body))
        return response, body

    transport.exchange = exchange  # type: ignore[method-assign]
    try:
        yield exchanges
    finally:
        del transport.exchange


# --- what each side does with a body, as functions of the captured bytes ---

def _encode_params(params: Any) -> Any:
    """The client's encoding of one statement's parameters (``session_proxy.dbapi``)."""
    if params is None:
        return None
    if isinstance(params, dict):
        return {key: codec.to_wire(value) for key, value in params.items()}
    return [codec.to_wire(value) for value in params]


def _proxy_phases(request: bytes, response: bytes) -> dict[str, Callable[[], Any]]:
    txn, steps = validation.parse_pipeline_request(codec.loads(request))
    validation.decode_step_params(steps, codec.from_wire)
    reply = codec.loads(response)
    results = reply.get("results") or []
    rows = [codec.decode_rows(r["rows"], r.get("tagged")) if r.get("rows") else None
            for r in results]

    def client_encode() -> bytes:
        encoded = []
        for step in steps:
            body = dict(step)
            if body.get("params") is not None:
                body["params"] = _encode_params(body["params"])
            if "seq_of_params" in body:
                body["seq_of_params"] = [_encode_params(p) for p in body["seq_of_params"]]
            encoded.append(body)
        return codec.dumps(protocol.pipeline_request(txn, encoded))

    def server_decode() -> Any:
        _, decoded = validation.parse_pipeline_request(codec.loads(request))
        validation.decode_step_params(decoded, codec.from_wire)
        return decoded

    def server_encode() -> bytes:
        pages = []
        for result, page in zip(results, rows, strict=True):
            body = {k: v for k, v in result.items() if k not in ("rows", "tagged")}
            if page is not None:
                encoded, tagged = codec.encode_rows(page)
                body["rows"] = encoded
                if tagged:
                    body["tagged"] = tagged
            pages.append(body)
        return codec.dumps(dict(reply, results=pages))

    def client_decode() -> Any:
        body = codec.loads(response)
        return [codec.decode_rows(r["rows"], r.get("tagged")) if r.get("rows") else None
                for r in body.get("results") or []]

    return {"client_encode": client_encode, "server_decode": server_decode,
            "server_encode": server_encode, "client_decode": client_decode}


def _logical_phases(request: bytes, response: bytes) -> dict[str, Callable[[], Any]]:
    raw_args, raw_kwargs = validation.parse_operation_request(codec.loads(request))
    args = [values.from_wire(a) for a in raw_args]
    kwargs = {k: values.from_wire(v) for k, v in raw_kwargs.items()}
    result = values.from_wire(codec.loads(response).get("result"))

    def client_encode() -> bytes:
        return codec.dumps(protocol.operation_request(
            [values.to_wire(a) for a in args], {k: values.to_wire(v) for k, v in kwargs.items()}
        ))

    def server_decode() -> Any:
        a, k = validation.parse_operation_request(codec.loads(request))
        return [values.from_wire(x) for x in a], {n: values.from_wire(v) for n, v in k.items()}

    def server_encode() -> bytes:
        return codec.dumps({"result": values.to_wire(result)})

    def client_decode() -> Any:
        return values.from_wire(codec.loads(response).get("result"))

    return {"client_encode": client_encode, "server_decode": server_decode,
            "server_encode": server_encode, "client_decode": client_decode}


def _time_phases(design: str, exchanges: list[Exchange], repeats: int) -> dict[str, list[float]]:
    """Seconds each phase takes over all the call's bodies, ``repeats`` times, interleaved."""
    build = _proxy_phases if design == "proxy" else _logical_phases
    phases = [build(request, response) for request, response in exchanges]
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for _ in range(repeats):
        for phase in PHASES:
            started = time.perf_counter()
            for functions in phases:
                functions[phase]()
            times[phase].append(time.perf_counter() - started)
    return times


# --- running the operations and capturing their bodies ---

def _proxy_call(runner: ModeRunner, operation: str, dag: PrivateDag) -> Any:
    if operation == "get_task_instances":
        # What the logical operation does, written as the application would.
        assert runner.session_factory is not None
        with runner.session_factory() as session:
            return session.scalars(
                sa.select(TaskInstance)
                .where(TaskInstance.dag_id == dag.dag, TaskInstance.run_id == dag.run)
                .order_by(TaskInstance.task_id)
            ).all()
    return _call(runner, operation, dag)


def _call(runner: ModeRunner, operation: str, dag: PrivateDag) -> Any:
    if operation == "get_task_instances":
        return runner.call(ops.get_task_instances, dag.dag, dag.run)
    if operation == "mini_scheduler":
        return runner.call(ops.mini_scheduler, dag.dag, dag.run, dag.root)
    if operation == "clear_task_instances":
        return runner.call(ops.clear_task_instances, dag.dag, dag.run, now=BASE_TIME)
    if operation == "create_dag_run":
        return runner.call(ops.create_dag_run, dag.dag, NEW_RUN, BASE_TIME, now=BASE_TIME)
    raise ValueError(f"unknown operation {operation!r}")


def _transport(runner: ModeRunner) -> HTTPTransport:
    if runner.client is not None:
        return runner.client.transport
    assert runner.engine is not None
    return runner.engine.dialect.transport  # type: ignore[attr-defined]


def _payloads(direct: sa.Engine, runners: dict[str, ModeRunner], dag: PrivateDag,
              repeats: int) -> list[dict[str, Any]]:
    entries = []
    for operation in OPERATIONS:
        for design in ("proxy", "logical"):
            runner = runners[design]
            with direct.begin() as conn:
                restore(conn, dag)
            transport = _transport(runner)
            with captured(transport) as exchanges:
                if design == "proxy":
                    _proxy_call(runner, operation, dag)
                else:
                    _call(runner, operation, dag)
            entries.append({
                "operation": operation,
                "tasks": dag.tasks,
                "design": design,
                "round_trips": len(exchanges),
                "request_bytes": sum(len(request) for request, _ in exchanges),
                "response_bytes": sum(len(response) for _, response in exchanges),
                "phases_s": _time_phases(design, exchanges, repeats),
            })
    return entries


def _latencies(direct: sa.Engine, runners: dict[str, ModeRunner], dag: PrivateDag,
               samples: int) -> list[dict[str, Any]]:
    measured: dict[tuple[str, str], list[float]] = {}
    for sample in range(-1, samples):  # sample -1 warms each call up, untimed
        for operation in LATENCY_OPERATIONS:
            for mode in MODES:
                with direct.begin() as conn:
                    restore(conn, dag)
                started = time.perf_counter()
                _call(runners[mode], operation, dag)
                if sample >= 0:
                    measured.setdefault((operation, mode), []).append(
                        time.perf_counter() - started)
    return [{"operation": operation, "mode": mode, "tasks": dag.tasks, "latency_s": latencies}
            for (operation, mode), latencies in measured.items()]


def measure(ctx: QuestionContext) -> dict[str, Any]:
    """Per-phase serialization times and bytes at each scale, and end-to-end latencies."""
    repeats = 15 if ctx.quick else 30
    samples = 2 if ctx.quick else 8
    direct = sa.create_engine(ctx.db_url)
    runners = {mode: ModeRunner(mode, db_url=ctx.db_url, server_url=ctx.server_url,
                                token=ctx.token, verify=ctx.verify, pool_size=1)
               for mode in MODES}
    payloads: list[dict[str, Any]] = []
    latencies: list[dict[str, Any]] = []
    try:
        for runner in runners.values():
            if runner.engine is not None:
                with runner.engine.connect():
                    pass  # first-connect queries belong to no call
        for tasks in SCALES:
            with private_dag(direct, f"q_serialization_{tasks}", tasks) as dag:
                _call(runners["logical"], "get_task_instances", dag)  # imports, caches
                payloads.extend(_payloads(direct, runners, dag, repeats))
                latencies.extend(_latencies(direct, runners, dag, samples))
    finally:
        for runner in runners.values():
            runner.close()
        direct.dispose()
    return {
        "scales": list(SCALES),
        "repeats": repeats,
        "latency_samples": samples,
        "latency_rtt_ms": 0.0,
        "payloads": payloads,
        "latency": latencies,
    }


QUESTION = Question(
    key=KEY,
    asked_by="Andrew Godwin",
    title="How much do serialization and the extra layer slow down operations touching "
          "a few hundred rows?",
    measure=measure,
)
