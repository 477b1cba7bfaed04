"""The reliability load run: concurrent clients, a lossy network, an invariant.

``run_load(LoadConfig(db_url))`` starts the server under gunicorn
(:class:`~session_proxy_bench.gunicorn_process.GunicornProcess`, one worker process
with threads, exposing :mod:`session_proxy_bench.load.transfer` and the workload's
operations), puts a :class:`~session_proxy_bench.relay.Relay` in front of it that
drops the response to a share of the requests (the server did the work, the
client sees its connection reset), and runs ``clients`` clients for
``seconds``.

The clients are **threads of this process**, not processes: they share the
GIL, so on a small machine the client side is part of what limits the
throughput, and the numbers are a lower bound for the server.  Proxy-mode
clients share one proxy engine (pool size = clients, as an application's
threads would share theirs); each logical client has its own
:class:`~session_proxy.logical.RemoteClient`.  Each client loops until the
deadline and draws every call from the mix:

``transfer.proxy``
    :func:`~session_proxy_bench.load.transfer.transfer_orm` on a
    :class:`~session_proxy.ProxySession`, then ``commit()``;
``transfer.logical``
    the logical operation ``load.transfer``, one HTTP call;
``workload``
    one of the Airflow-like workload's operations (:data:`WORKLOAD_CALLS`),
    run as :mod:`session_proxy_bench.workload.modes` runs them in proxy mode, on data
    seeded once before the run; recorded as ``workload.<operation>``.

A transfer is *acknowledged* when its commit (or logical call) returned
normally.  Every call is recorded with its kind, start, latency and error
kind (``type(exc.orig).__name__`` for SQLAlchemy's DBAPI error wrappers,
else ``type(exc).__name__``).  After the deadline the run waits until the
server holds no transaction (orphaned ones end with their lease), then
checks the invariants of :func:`~session_proxy_bench.load.transfer.check_invariants`
through a direct engine, reads the server's ``/v1/metrics`` and the relay's
fault counts, and returns a JSON-able result whose ``passed`` is true when
there were no violations.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy.logical import RemoteClient

from ..gunicorn_process import GunicornProcess
from ..relay import Faults, Relay
from ..stats import percentile
from ..workload import OPERATIONS_MODULE
from ..workload import operations as ops
from ..workload.seed import BASE_TIME, dag_id, reset_schema, run_id, seed
from . import transfer

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TRANSFER_MODULE = "session_proxy_bench.load.transfer"
KINDS = ("transfer.proxy", "transfer.logical", "workload")
DEFAULT_MIX: dict[str, float] = {"transfer.proxy": 0.4, "transfer.logical": 0.3, "workload": 0.3}
#: The seed the workload operations run on: one DAG per 4 clients or so, so that
#: ``mini_scheduler`` (which locks its dag run) contends as it would among the
#: workers of a few busy DAGs, not all on one row.
WORKLOAD_SEED = {"dags": 8, "runs_per_dag": 3, "tasks_per_dag": 10}
DAGS, RUNS = WORKLOAD_SEED["dags"], WORKLOAD_SEED["runs_per_dag"]
LIVE_RUN = run_id(RUNS - 1)
#: Messages kept per error kind, for the report.
ERROR_SAMPLES = 3

Call = Callable[[int, int], tuple[Any, tuple, dict]]

#: Workload operations of the mix: (name, arguments(client, n) -> (operation, args, kwargs)).
#: Keys are per client where concurrent writers of one key would conflict by design.
WORKLOAD_CALLS: dict[str, Call] = {
    "get_dag_run": lambda c, n: (ops.get_dag_run, (dag_id(c % DAGS), run_id(n % RUNS)), {}),
    "get_variable": lambda c, n: (ops.get_variable, (f"var_{n % 20:03d}",), {}),
    "set_variable": lambda c, n: (ops.set_variable, (f"var_{c % 20:03d}", f"c{c}-{n}"), {}),
    "xcom_push": lambda c, n: (ops.xcom_push, (dag_id(c % DAGS), LIVE_RUN, "t001", f"load_c{c}",
                                               {"client": c, "n": n}), {"now": BASE_TIME}),
    "xcom_pull": lambda c, n: (ops.xcom_pull, (dag_id(c % DAGS), LIVE_RUN, "t000"), {}),
    "heartbeat": lambda c, n: (ops.heartbeat, (c % (2 * DAGS) + 1,),
                               {"now": BASE_TIME + datetime.timedelta(microseconds=n)}),
    "mini_scheduler": lambda c, n: (ops.mini_scheduler,
                                    (dag_id(c % DAGS), run_id(n % RUNS), "t000"), {}),
    "create_dag_run": lambda c, n: (ops.create_dag_run,
                                    (dag_id(c % DAGS), f"load_c{c:03d}_{n:07d}",
                                     BASE_TIME + datetime.timedelta(seconds=n)),
                                    {"now": BASE_TIME}),
    "find_zombies": lambda c, n: (ops.find_zombies, (300,), {"now": BASE_TIME}),
}


@dataclasses.dataclass
class LoadConfig:
    """Everything one load run depends on."""

    db_url: str = PG_DEFAULT
    clients: int = 32
    seconds: float = 60.0
    #: Share of requests whose response the relay drops (after the server handled them).
    drop_rate: float = 0.01
    #: Share of requests the relay resets before the server sees them.
    reset_rate: float = 0.0
    seed: int = 20260101
    #: Weight of each kind of call (:data:`KINDS`); need not sum to 1.
    mix: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MIX))
    accounts: int = 100
    initial_balance: int = 1000
    #: gunicorn worker threads; None: clients + 8, at least 40.
    server_threads: int | None = None
    #: Server lease: an orphaned transaction (its client lost the answer) holds
    #: its row locks this long before the server rolls it back.
    lease_seconds: float = 5.0
    #: Client timeout per HTTP response.
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError(f"clients must be >= 1, got {self.clients}")
        if self.seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        for name in ("drop_rate", "reset_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1, got {getattr(self, name)}")
        unknown = sorted(set(self.mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds in the mix: {unknown}; known: {list(KINDS)}")
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix weights must be >= 0 and not all 0, got {self.mix}")
        if self.accounts < 2:
            raise ValueError(f"accounts must be >= 2, got {self.accounts}")
        if self.lease_seconds <= 0 or self.timeout <= 0:
            raise ValueError("lease_seconds and timeout must be > 0")

    @property
    def threads(self) -> int:
        """gunicorn's worker threads for this run."""
        return self.server_threads or max(40, self.clients + 8)

    @property
    def max_transactions(self) -> int:
        """The server's transaction cap (and pool size): room for orphaned transactions."""
        return max(64, 2 * self.clients)


def error_kind(exc: BaseException) -> str:
    """``type(exc.orig).__name__`` for a SQLAlchemy DBAPI error wrapper, else the type's name."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return type(exc.orig).__name__
    return type(exc).__name__


@dataclasses.dataclass
class Record:
    """One call: what it was, when, how long, and how it ended."""

    kind: str
    start: float
    latency: float
    error: str | None = None
    key: str | None = None
    acknowledged: bool = False


class _Recorder:
    """Error messages kept per kind, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.samples: dict[str, list[str]] = {}

    def error(self, kind: str, exc: BaseException) -> None:
        with self.lock:
            kept = self.samples.setdefault(kind, [])
            if len(kept) < ERROR_SAMPLES:
                first_line = (str(exc).strip().splitlines() or [""])[0]
                kept.append(f"{type(exc).__name__}: {first_line}"[:300])


def _proxy_url(port: int, backend: str) -> str:
    """``<backend>+sessionproxy://127.0.0.1:<port>/``; the token goes as ``proxy_token``."""
    return f"{backend}+sessionproxy://127.0.0.1:{port}/"


def parse_metrics(text: str) -> dict[str, Any]:
    """A few counters of ``/v1/metrics``: requests by status, and every unlabelled sample."""
    by_status: Counter[str] = Counter()
    plain: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        if name_labels.startswith("session_proxy_requests_total{"):
            status = name_labels.split('status="', 1)[-1].split('"', 1)[0]
            by_status[status] += int(number)
        elif "{" not in name_labels:
            plain[name_labels] = number
    return {"requests_by_status": dict(sorted(by_status.items())), "counters": plain}


def _server_metrics(server: GunicornProcess) -> dict[str, Any] | None:
    try:
        response = requests.get(server.url + "/v1/metrics", headers=server.headers, timeout=10)
        response.raise_for_status()
    except requests.RequestException:
        return None
    return parse_metrics(response.text)


def _settle(server: GunicornProcess, limit: float) -> dict[str, Any]:
    """Wait until the server holds no open transaction (orphans end with their lease)."""
    started = time.monotonic()
    open_now: float | None = None
    while True:
        metrics = _server_metrics(server)
        if metrics is not None:
            open_now = metrics["counters"].get("session_proxy_open_transactions")
        if open_now == 0 or time.monotonic() - started > limit:
            break
        time.sleep(0.25)
    return {"open_transactions": open_now, "waited_s": time.monotonic() - started}


def _latency_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    return {"p50": percentile(values, 50) * 1000, "p95": percentile(values, 95) * 1000,
            "p99": percentile(values, 99) * 1000, "max": max(values) * 1000}


def _summary(records: list[Record], seconds: float) -> dict[str, Any]:
    ok = [r.latency for r in records if r.error is None]
    errors = Counter(r.error for r in records if r.error is not None)
    return {
        "ops": len(records),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "throughput": len(records) / seconds if seconds else None,
        "throughput_ok": len(ok) / seconds if seconds else None,
        "latency_ms": _latency_ms(ok),
        "latency_all_ms": _latency_ms([r.latency for r in records]),
        "errors_by_kind": dict(errors.most_common()),
    }


class _Run:
    """The state one load run's client threads share."""

    def __init__(self, config: LoadConfig, url: str, token: str, engine: sa.Engine) -> None:
        self.config = config
        self.url = url
        self.token = token
        self.engine = engine
        self.factory = sessionmaker(class_=session_proxy.ProxySession, bind=engine,
                                    defer_flush_errors=True)
        self.tag = uuid.uuid4().hex[:8]
        self.recorder = _Recorder()
        self.kinds = [k for k in KINDS if config.mix.get(k, 0) > 0]
        self.weights = [config.mix[k] for k in self.kinds]
        self.workload = list(WORKLOAD_CALLS)
        self.clients: list[RemoteClient] = []
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.deadline = 0.0

    def client(self, index: int, records: list[Record]) -> None:
        """One client's loop until the deadline."""
        config = self.config
        rng = random.Random(config.seed * 1_000_003 + index)
        remote = RemoteClient(self.url, token=self.token, timeout=config.timeout)
        with self.lock:
            self.clients.append(remote)
        n = 0
        while True:
            started = time.perf_counter()
            if started >= self.deadline:
                break
            kind = rng.choices(self.kinds, self.weights)[0]
            key = None
            if kind == "workload":
                name = rng.choice(self.workload)
                kind = f"workload.{name}"
                operation, args, kwargs = WORKLOAD_CALLS[name](index, n)
            else:
                key = f"{self.tag}-c{index:03d}-{n:07d}"
                src, dst = rng.sample(range(1, config.accounts + 1), 2)
                args, kwargs = (key, src, dst, rng.randint(1, 10)), {"client": f"c{index:03d}"}
            error = None
            try:
                if kind == "transfer.proxy":
                    self._proxy_transfer(*args, **kwargs)
                elif kind == "transfer.logical":
                    remote.call("load.transfer", args, kwargs)
                else:
                    operation.run_in_transaction(self.factory, args, kwargs)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded by kind
                error = error_kind(exc)
                self.recorder.error(error, exc)
            latency = time.perf_counter() - started
            records.append(Record(kind, started - self.t0, latency, error, key,
                                  key is not None and error is None))
            n += 1

    def _proxy_transfer(self, key: str, src: int, dst: int, amount: int, client: str) -> None:
        """The ORM transfer on a ProxySession; acknowledged once ``commit()`` returns."""
        with self.factory() as session:
            transfer.transfer_orm(session, key, src, dst, amount, client)
            session.commit()


def _timeline(records: list[Record], seconds: float) -> list[list[int]]:
    """``[second, ok, errors]`` for each second until the deadline, by call start."""
    buckets = [[s, 0, 0] for s in range(max(1, math.ceil(seconds)))]
    for record in records:
        slot = buckets[min(int(record.start), len(buckets) - 1)]
        slot[1 if record.error is None else 2] += 1
    return buckets


def _retries(stats: Any) -> int | None:
    value = getattr(stats, "retries", None)
    return int(value) if isinstance(value, (int, float)) else None


def _environment(direct: sa.Engine, config: LoadConfig) -> dict[str, Any]:
    from ..environment import environment

    env = environment(direct)
    try:
        env["gunicorn"] = importlib.metadata.version("gunicorn")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - checked at start
        env["gunicorn"] = None
    env["server"] = (f"gunicorn, 1 worker process, {config.threads} threads, "
                     f"lease {config.lease_seconds:g} s, "
                     f"max {config.max_transactions} transactions")
    env["clients"] = f"{config.clients} threads in one client process"
    return env


def run_load(config: LoadConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the load described by ``config``; return its JSON-able result document."""
    say = progress or (lambda message: None)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    direct = sa.create_engine(config.db_url, pool_pre_ping=True)
    try:
        env = _environment(direct, config)
        say(f"setting up {config.accounts} accounts"
            + (" and the workload data" if config.mix.get("workload") else ""))
        transfer.setup(direct, config.accounts, config.initial_balance)
        if config.mix.get("workload"):
            reset_schema(direct)
            with sessionmaker(bind=direct)() as session:
                seed(session, **WORKLOAD_SEED)
                session.commit()
        limits = str(config.max_transactions)
        server = GunicornProcess(
            config.db_url, threads=config.threads, operations=(TRANSFER_MODULE, OPERATIONS_MODULE),
            env_extra={"SESSION_PROXY_LEASE_SECONDS": f"{config.lease_seconds:g}",
                       "SESSION_PROXY_MAX_TRANSACTIONS": limits,
                       "SESSION_PROXY_MAX_TRANSACTIONS_PER_SUBJECT": limits},
        )
        with server:
            faults = Faults(drop_response=config.drop_rate, reset=config.reset_rate,
                            seed=config.seed)
            with Relay(server.port, rtt=0.0, faults=faults) as relay:
                result = _drive(config, server, relay, direct, say)
                relay_counts = relay.counts
            result["relay"] = relay_counts
            say("waiting for orphaned transactions to end")
            result["settle"] = _settle(server, config.lease_seconds * 2 + 10)
            result["server_metrics"] = _server_metrics(server)
            say("checking invariants")
            result["invariants"] = transfer.check_invariants(
                direct, result.pop("_acknowledged"), result.pop("_attempted"),
                config.accounts, config.initial_balance)
    finally:
        direct.dispose()
    finished_at = datetime.datetime.now(datetime.timezone.utc)
    violations = result["invariants"]["violations"]
    return {
        "format": 1,
        "kind": "load",
        "config": dataclasses.asdict(config),
        "environment": env,
        "started": started_at.isoformat(),
        "finished": finished_at.isoformat(),
        **result,
        "workload_seed": dict(WORKLOAD_SEED) if config.mix.get("workload") else None,
        "violations": violations,
        "passed": violations == 0,
    }


def _drive(config: LoadConfig, server: GunicornProcess, relay: Relay, direct: sa.Engine,
           say: Callable[[str], None]) -> dict[str, Any]:
    """Run the client threads through ``relay``; the measurements, before the checks."""
    engine = sa.create_engine(
        _proxy_url(relay.port, direct.dialect.name), proxy_token=server.token,
        pool_size=config.clients, max_overflow=config.clients,
        proxy_timeout=config.timeout, proxy_pipeline_dml=True,
    )
    run = _Run(config, relay.url, server.token, engine)
    try:
        # The dialect's first connect, before the clock starts.
        engine.connect().close()
        records: list[list[Record]] = [[] for _ in range(config.clients)]
        threads = [threading.Thread(target=run.client, args=(i, records[i]),
                                    name=f"load-client-{i}", daemon=True)
                   for i in range(config.clients)]
        say(f"{config.clients} clients for {config.seconds:g} s through gunicorn and a relay "
            f"dropping {config.drop_rate:.1%} of responses")
        run.t0 = time.perf_counter()
        run.deadline = run.t0 + config.seconds
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - run.t0
        retries = {"proxy": _retries(session_proxy.stats(engine)),
                   "logical": None}
        logical = [_retries(client.stats) for client in run.clients]
        if logical and all(value is not None for value in logical):
            retries["logical"] = sum(v for v in logical if v is not None)
    finally:
        engine.dispose()
        for client in run.clients:
            client.close()
    every = [record for per_client in records for record in per_client]
    by_kind: dict[str, list[Record]] = {}
    for record in every:
        by_kind.setdefault(record.kind, []).append(record)
    transfers = [r for r in every if r.key is not None]
    return {
        "duration_s": elapsed,
        **_summary(every, elapsed),
        "per_kind": {kind: _summary(items, elapsed) for kind, items in sorted(by_kind.items())},
        "error_samples": run.recorder.samples,
        "client_retries": retries,
        "timeline": _timeline(every, config.seconds),
        "transfers": {
            "attempted": len(transfers),
            "acknowledged": sum(1 for r in transfers if r.acknowledged),
            "failed": sum(1 for r in transfers if not r.acknowledged),
        },
        "_acknowledged": [r.key for r in transfers if r.acknowledged],
        "_attempted": [r.key for r in transfers],
    }
