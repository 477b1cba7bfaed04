"""Run the workload in direct, proxy and logical modes and record every sample.

For each scale (``tasks_per_dag``) the database is reset and seeded; for each
injected round-trip time a :class:`~session_proxy_bench.relay.Relay` sits between the
client and the session-proxy server (and, for a networked database, between
the direct-mode client and the database); for each mode every operation is
warmed up and then sampled.  Each sample records the wall latency and the
counters of its mode.  The floors (a direct ``SELECT 1`` and a bare HTTP
round trip over the same stack) and the concurrent throughput runs are
measured in the same run.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy.transport import HTTPTransport
from session_proxy_server.testing import ServerProcess

from .probes import run_probes
from .questions import QUESTIONS, QuestionContext, measure_questions
from .relay import Relay
from .scenarios import SCENARIOS, THROUGHPUT_MIX, Context, restore_live_run
from .security.attacks import security_results
from .stats import percentile
from .targets_probe import measure_targets
from .workload import operations as ops
from .workload.modes import MODES, ModeRunner
from .workload.seed import BASE_TIME, reset_schema, seed

OPERATIONS_MODULE = "session_proxy_bench.workload.operations"


@dataclasses.dataclass
class BenchConfig:
    """Every axis of one benchmark run."""

    db: str = "sqlite"
    operations: list[str] = dataclasses.field(default_factory=lambda: list(SCENARIOS))
    modes: list[str] = dataclasses.field(default_factory=lambda: list(MODES))
    rtts: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.001, 0.005])
    scales: list[int] = dataclasses.field(default_factory=lambda: [10, 100])
    clients: list[int] = dataclasses.field(default_factory=lambda: [1, 8])
    samples: int = 20
    warmup: int = 3
    floor_samples: int = 50
    probe_samples: int = 5
    throughput_seconds: float = 2.0
    dags: int = 2
    runs_per_dag: int = 3
    server_url: str | None = None
    #: Bearer token for ``server_url`` (a started server makes its own).
    token: str | None = None
    #: Run the attack suite (:mod:`session_proxy_bench.security`) after the measurements.
    security: bool = True
    #: Measure issue 16's Targets (:mod:`session_proxy_bench.targets_probe`) at 0 ms RTT.
    targets: bool = True
    #: Measure the thread's questions (:mod:`session_proxy_bench.questions`).
    questions: bool = True
    #: The short preset: questions measure less (never differently).
    quick: bool = False
    #: An Airflow inventory JSON to embed (:mod:`session_proxy_bench.airflow_inventory`).
    inventory_results: str | None = None

    def __post_init__(self) -> None:
        unknown = [op for op in self.operations if op not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown operations {unknown}; known: {sorted(SCENARIOS)}")
        bad_modes = [m for m in self.modes if m not in MODES]
        if bad_modes:
            raise ValueError(f"unknown modes {bad_modes}; known: {list(MODES)}")
        if any(rtt < 0 for rtt in self.rtts) or not self.rtts:
            raise ValueError(f"rtts must be non-empty and >= 0, got {self.rtts}")
        if any(n < 2 for n in self.scales) or not self.scales:
            raise ValueError(f"tasks-per-dag values must be >= 2, got {self.scales}")
        if self.samples < 1 or self.warmup < 0:
            raise ValueError("samples must be >= 1 and warmup >= 0")


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        """Count one unit of work and redraw."""
        self.done += 1
        filled = int(self.width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {label[:48]:<48}"
        )
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _relayed_url(db_url: str, relay: Relay | None) -> str:
    if relay is None:
        return db_url
    url = sa.engine.make_url(db_url)
    return url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)


@contextmanager
def _maybe_relay(port: int | None, rtt: float) -> Iterator[Relay | None]:
    if port is None or rtt == 0:
        yield None
        return
    with Relay(port, rtt) as relay:
        yield relay


def environment(direct: sa.Engine) -> dict[str, Any]:
    """Machine, software and backend versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with direct.connect():
        version = direct.dialect.server_version_info
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "werkzeug": importlib.metadata.version("werkzeug"),
        "session_proxy": session_proxy.__version__,
        "backend": direct.dialect.name,
        "driver": direct.dialect.driver,
        "backend_version": ".".join(str(v) for v in version or ()),
    }


class Benchmark:
    """One run of the benchmark for a :class:`BenchConfig`."""

    def __init__(self, config: BenchConfig, progress: bool = True) -> None:
        self.config = config
        self.token = config.token
        self.show_progress = progress
        self.samples: list[dict] = []
        self.floors: list[dict] = []
        self.probes: list[dict] = []
        self.throughput: list[dict] = []
        self.targets: dict[str, Any] | None = None
        self.questions: dict[str, Any] | None = None

    def _cells(self) -> int:
        c = self.config
        scaled = sum(1 for op in c.operations if SCENARIOS[op].scaled)
        per_rtt = len(c.modes) * (len(c.operations) + scaled * (len(c.scales) - 1))
        return (len(c.rtts) * (per_rtt + 2 + len(c.modes) * len(c.clients)) + int(c.security)
                + int(self._measures_targets()) + (len(QUESTIONS) if c.questions else 0))

    def _measures_targets(self) -> bool:
        """Targets need the bench's own server (its pid) and a 0 ms RTT cell."""
        c = self.config
        return c.targets and c.server_url is None and 0.0 in c.rtts

    def run(self, command: Sequence[str] = ()) -> dict[str, Any]:
        """Run every configured cell; return the results document."""
        config = self.config
        started = datetime.datetime.now(datetime.timezone.utc)
        with ExitStack() as stack:
            db_url = config.db
            if db_url == "sqlite":
                tmp = stack.enter_context(tempfile.TemporaryDirectory())
                db_url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
            direct = sa.create_engine(db_url)
            stack.callback(direct.dispose)
            server_url = config.server_url
            server = None
            if server_url is None:
                server = stack.enter_context(
                    ServerProcess(db_url, "--operations", OPERATIONS_MODULE)
                )
                server_url = server.url
                self.token = server.token
            env = environment(direct)
            progress = Progress(self._cells(), stream=None if self.show_progress else _Null())
            server_port = sa.engine.make_url(server_url).port
            db_port = None if env["backend"] == "sqlite" else (
                sa.engine.make_url(db_url).port or {"postgresql": 5432, "mysql": 3306}[
                    env["backend"]]
            )
            for scale_index, scale in enumerate(config.scales):
                ctx = Context(tasks_per_dag=scale, runs_per_dag=config.runs_per_dag)
                reset_schema(direct)
                with sessionmaker(bind=direct)() as session:
                    seed(session, dags=config.dags, runs_per_dag=config.runs_per_dag,
                         tasks_per_dag=scale)
                    session.commit()
                operations = [
                    op for op in config.operations
                    if scale_index == 0 or SCENARIOS[op].scaled
                ]
                for rtt in config.rtts:
                    with _maybe_relay(server_port, rtt) as server_relay, \
                            _maybe_relay(db_port, rtt) as db_relay:
                        proxy_url = server_relay.url if server_relay else server_url
                        direct_url = _relayed_url(db_url, db_relay)
                        if scale_index == 0:
                            self._floors(direct_url, proxy_url, rtt)
                            progress.step(f"floors rtt={rtt * 1000:g}ms")
                            self._probes(direct, direct_url, proxy_url, rtt)
                            progress.step(f"probes rtt={rtt * 1000:g}ms")
                            if rtt == 0 and server is not None and self._measures_targets():
                                self.targets = measure_targets(db_url, server,
                                                               config.throughput_seconds)
                                progress.step("targets rtt=0ms")
                        for mode in config.modes:
                            runner = ModeRunner(mode, db_url=direct_url, server_url=proxy_url,
                                                token=self.token)
                            try:
                                self._warm(runner)
                                for op in operations:
                                    self._sample(runner, direct, SCENARIOS[op], ctx, rtt)
                                    progress.step(f"{op} {mode} rtt={rtt * 1000:g}ms n={scale}")
                            finally:
                                runner.close()
                        if scale_index == 0:
                            for mode in config.modes:
                                for clients in config.clients:
                                    self._throughput(mode, clients, direct_url, proxy_url, rtt,
                                                     direct, ctx)
                                    progress.step(f"throughput {mode} x{clients}")
            if config.questions:
                qctx = QuestionContext(
                    db_url=db_url, server_url=server_url, token=self.token,
                    rtts=tuple(config.rtts), samples=config.samples, quick=config.quick,
                    inventory_results=config.inventory_results,
                )
                self.questions = {}
                for question in QUESTIONS:
                    self.questions.update(measure_questions(qctx, [question.key]))
                    progress.step(f"question {question.key}")
            security = None
            if config.security:
                security = security_results(db_url)
                progress.step("attack suite")
        finished = datetime.datetime.now(datetime.timezone.utc)
        return {
            "format": 1,
            "command": list(command),
            "config": dataclasses.asdict(config),
            "environment": env,
            # What the latency relay charges (benchmarks/relay.py).
            "network": {"relay_handshake": True},
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "samples": self.samples,
            "floors": self.floors,
            "probes": self.probes,
            "throughput": self.throughput,
            # Issue 16's Targets at 0 ms RTT (session_proxy_bench.targets_probe); None: not run.
            "targets": self.targets,
            "security": security,
            # The thread's questions (session_proxy_bench.questions); None: not run.
            "questions": self.questions,
        }

    @staticmethod
    def _warm(runner: ModeRunner) -> None:
        if runner.engine is not None:
            with runner.engine.connect():
                pass  # the dialect's first-connect queries are not part of any sample
        runner.call(ops.get_variable, "var_000")

    def _sample(self, runner: ModeRunner, direct: sa.Engine, scenario: Any, ctx: Context,
                rtt: float) -> None:
        config = self.config
        for i in range(config.warmup + config.samples):
            if scenario.prepare is not None:
                with direct.begin() as conn:
                    scenario.prepare(conn, i, ctx)
            args, kwargs = scenario.arguments(i, ctx)
            before = runner.snapshot()
            started = time.perf_counter()
            runner.call(scenario.operation, *args, **kwargs)
            latency = time.perf_counter() - started
            spent = runner.snapshot() - before
            if i < config.warmup:
                continue
            self.samples.append({
                "operation": scenario.name,
                "mode": runner.mode,
                "rtt_ms": rtt * 1000,
                "tasks_per_dag": ctx.tasks_per_dag,
                "latency_s": latency,
                "round_trips": None if runner.mode == "direct" else spent.round_trips,
                "request_bytes": spent.request_bytes,
                "response_bytes": spent.response_bytes,
                "statements": spent.statements,
                "server_s": spent.server_seconds if runner.mode != "direct" else None,
                "txn_s": spent.transaction_seconds,
            })
        if scenario.prepare is not None:
            with direct.begin() as conn:
                restore_live_run(conn, ctx)

    def _floors(self, direct_url: str, proxy_url: str, rtt: float) -> None:
        """Direct SELECT 1, HTTP echo and a one-row SELECT through the proxy, interleaved.

        The proxy SELECT runs in AUTOCOMMIT on a lease kept open, so each
        sample is exactly one round trip carrying one statement.
        ``proxy_select_txn`` is the same SELECT in a transaction kept open
        (non-AUTOCOMMIT), as the direct ``db_select_1`` runs it (SQLAlchemy
        begins on first use): the Targets' proxy ÷ direct SQLAlchemy ratio.
        """
        engine = sa.create_engine(direct_url)
        proxy = session_proxy.create_engine(
            proxy_url, token=self.token, isolation_level="AUTOCOMMIT"
        )
        in_txn = session_proxy.create_engine(proxy_url, token=self.token)
        transport = HTTPTransport(proxy_url, token=self.token)
        try:
            with engine.connect() as conn, proxy.connect() as proxied, \
                    in_txn.connect() as txn_conn:
                conn.exec_driver_sql("SELECT 1").scalar()
                proxied.exec_driver_sql("SELECT 1").scalar()
                txn_conn.begin()
                txn_conn.exec_driver_sql("SELECT 1").scalar()
                transport.ping()
                for _ in range(self.config.floor_samples):
                    for floor, run in (
                        ("db_select_1", lambda: conn.exec_driver_sql("SELECT 1").scalar()),
                        ("http_echo", transport.ping),
                        ("proxy_select_1",
                         lambda: proxied.exec_driver_sql("SELECT 1").scalar()),
                        ("proxy_select_txn",
                         lambda: txn_conn.exec_driver_sql("SELECT 1").scalar()),
                    ):
                        started = time.perf_counter()
                        run()
                        self.floors.append({"floor": floor, "rtt_ms": rtt * 1000,
                                            "latency_s": time.perf_counter() - started})
        finally:
            transport.close()
            in_txn.dispose()
            proxy.dispose()
            engine.dispose()

    def _probes(self, direct: sa.Engine, direct_url: str, proxy_url: str, rtt: float) -> None:
        engines = {}
        if "direct" in self.config.modes:
            engines["direct"] = sa.create_engine(direct_url)
        if "proxy" in self.config.modes:
            engines["proxy"] = session_proxy.create_engine(proxy_url, token=self.token)
        try:
            self.probes.extend(run_probes(direct, engines, rtt, self.config.probe_samples))
        finally:
            for engine in engines.values():
                engine.dispose()

    def _throughput(self, mode: str, clients: int, direct_url: str, proxy_url: str, rtt: float,
                    direct: sa.Engine, ctx: Context) -> None:
        runners = [ModeRunner(mode, db_url=direct_url, server_url=proxy_url,
                               token=self.token, pool_size=2)
                   for _ in range(clients)]
        for runner in runners:
            self._warm(runner)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors: list[Counter] = [Counter() for _ in range(clients)]
        deadline = time.monotonic() + self.config.throughput_seconds
        jobs = 2 * self.config.dags
        calls = _throughput_calls(ctx)

        def work(index: int) -> None:
            runner = runners[index]
            n = 0
            while time.monotonic() < deadline:
                call = calls[(index + n) % len(calls)]
                started = time.perf_counter()
                try:
                    call(runner, index % jobs + 1, n)
                    latencies[index].append(time.perf_counter() - started)
                except Exception as exc:  # noqa: BLE001 - counted by kind
                    errors[index][type(exc).__name__] += 1
                n += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        for runner in runners:
            runner.close()
        every = [value for per_client in latencies for value in per_client]
        total_errors = sum(errors, Counter())
        self.throughput.append({
            "mode": mode,
            "clients": clients,
            "rtt_ms": rtt * 1000,
            "operations": len(every),
            "seconds": elapsed,
            "throughput": len(every) / elapsed,
            "p50_s": percentile(every, 50) if every else None,
            "p99_s": percentile(every, 99) if every else None,
            "errors": dict(total_errors),
        })


def _throughput_calls(ctx: Context) -> list[Callable[[ModeRunner, int, int], Any]]:
    """The light operation mix of the throughput runs, one callable each."""
    table = {
        "get_dag_run": lambda r, job, n: r.call(ops.get_dag_run, ctx.dag, ctx.live_run),
        "get_variable": lambda r, job, n: r.call(ops.get_variable, "var_005"),
        "xcom_pull": lambda r, job, n: r.call(ops.xcom_pull, ctx.dag, ctx.live_run, "t000"),
        "heartbeat": lambda r, job, n: r.call(
            ops.heartbeat, job, now=BASE_TIME + datetime.timedelta(microseconds=n)),
    }
    return [table[name] for name in THROUGHPUT_MIX]


class _Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
