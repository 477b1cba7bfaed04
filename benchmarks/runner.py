"""Run the workload in direct, proxy, proxy_best and logical modes and record every sample.

The run measures the deployed configuration unless told otherwise: the
benchmark starts ``session-proxy-server`` as a user would (waitress, or
cheroot once TLS is on; one process), with token authentication, HTTPS
with a self-signed certificate made for the run (clients verify against
it; ``tls=False``, ``--no-tls``, serves plain HTTP for comparison), and
every request under an idempotency key (the client always sends one).

The grid is repeated ``repeat`` times.  In each repetition, for each scale
(``tasks_per_dag``) the database is reset and seeded; for each injected
round-trip time a :class:`~session_proxy_bench.relay.Relay` sits between the
client and the server (and, for a networked database, between the
direct-mode client and the database), charging TCP (and so TLS)
handshakes; for each operation the modes are **interleaved sample by
sample**: round ``i`` calls the operation once in every mode, in the mode
order rotated by ``i``, after the untimed ``prepare`` step before each
call.  Warm-up rounds come first and are not recorded.  The floors (a
direct ``SELECT 1`` and a bare HTTP round trip, interleaved) are measured in
every repetition; the probes and the Targets once, in the first.  The
throughput cells run each mode in turn (the order rotated by repetition)
with ``clients`` client **processes** (:mod:`session_proxy_bench.client_pool`).

The results document (``format`` 2) holds:

``command``, ``config``, ``started``, ``finished``, ``wall_seconds``, ``phase_seconds``
    How the run was started and how long it took, in all and per phase
    (``latency``, ``throughput``, ``floors``, ``probes``, ``targets``,
    ``questions``, ``security``; seeding counts for the phase after it).
``environment``
    Flat: git commit and dirtiness, library versions, machine, database
    version (:mod:`session_proxy_bench.environment`).
``deployment``
    The server as run: ``serving`` (waitress or cheroot), its worker
    ``threads`` (the default), ``tls``,
    ``authentication``, ``idempotency_keys``, ``server_pid``, how server CPU
    was read (``server_cpu_meter``), ``clients_are_processes``.
``network``
    ``relay_handshake`` (the relay charges connection set-up) and ``legs``:
    for ``client_server`` (proxy and logical modes), ``client_database``
    (direct mode) and ``server_database``, whether TLS was used (and the
    negotiated version and cipher, or how the database was asked).
``samples``
    One per recorded call: ``operation``, ``mode``, ``rtt_ms``,
    ``tasks_per_dag``, ``repetition``, ``round`` (sample index in the cell,
    shared by the modes of one round), ``position`` (the mode's place in
    its round's order), ``seq`` (the call's place among all timed calls of
    the run, warm-up calls included), ``latency_s``, ``round_trips``,
    ``request_bytes``, ``response_bytes``, ``statements``, ``server_s``,
    ``txn_s`` and ``server_cpu_s``: the server process's CPU time from
    the start of this call to the start of the next one (after its
    untimed prepare step), so work the server does after answering (the
    session reset, a background COMMIT) counts for the call that caused it;
    None in direct mode and against an outside server.
``server_cpu``
    One per cell and mode: ``operation``, ``mode``, ``rtt_ms``,
    ``tasks_per_dag``, ``repetition``, ``calls``, ``server_cpu_s`` (the sum
    of its samples') and ``per_call_s``.
``floors``, ``probes``
    As before, each with its ``repetition``.
``throughput``
    One per mode, client count, RTT and repetition: ``operations``,
    ``seconds``, ``throughput``, ``p50_s``, ``p99_s``, ``errors``,
    ``clients_are_processes`` (true), ``client_pids`` (one per client
    process), ``latencies_s`` (every call's, rounded to the microsecond),
    ``server_cpu_s`` and ``server_cpu_per_call_s``.
``targets``, ``questions``, ``security``
    The Targets, the thread's questions and the attack suite (None: not run).
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy import background
from session_proxy.config import ClientConfig
from session_proxy.transport import HTTPTransport
from session_proxy_server.serving import THREADS
from session_proxy_server.testing import ServerProcess

from .client_pool import ClientPool, ClientSpec, ensure_client_jobs
from .environment import database_tls, environment, https_session
from .probes import run_probes
from .processes import METER_SOURCE, CpuMeter
from .questions import QUESTIONS, QuestionContext, measure_questions
from .relay import Relay
from .scenarios import SCENARIOS, Context, restore_live_run
from .security.attacks import security_results
from .stats import percentile
from .targets_probe import measure_targets
from .workload import OPERATIONS_MODULE
from .workload.modes import MODES, ModeRunner
from .workload.seed import reset_schema, seed

FORMAT = 2


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
    #: How many times the whole grid of cells is measured.
    repeat: int = 1
    #: Serve HTTPS with a certificate made for the run (the deployed configuration).
    tls: bool = True
    server_url: str | None = None
    #: Bearer token for ``server_url`` (a started server makes its own).
    token: str | None = None
    #: CA bundle that verifies ``server_url``'s certificate (None: the system's).
    ca: str | None = None
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
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat}")
        if any(n < 1 for n in self.clients):
            raise ValueError(f"client counts must be >= 1, got {self.clients}")


class Progress:
    """A one-line progress bar on stderr, and the seconds spent in each phase."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = self.last = time.monotonic()
        #: Seconds per phase (``"latency"``, ``"throughput"``, ...), each step's
        #: time since the previous step counted for the step's phase.
        self.phases: dict[str, float] = {}

    def step(self, label: str, phase: str) -> None:
        """Count one unit of work of ``phase`` and redraw."""
        self.done += 1
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now
        filled = int(self.width * self.done / self.total)
        elapsed = now - self.started
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


def rotated(modes: Sequence[str], turn: int) -> list[str]:
    """``modes`` starting at ``turn`` (mod their number): round ``turn``'s order."""
    k = turn % len(modes)
    return [*modes[k:], *modes[:k]]


class Benchmark:
    """One run of the benchmark for a :class:`BenchConfig`."""

    def __init__(self, config: BenchConfig, progress: bool = True) -> None:
        self.config = config
        self.token = config.token
        self.verify: bool | str = config.ca or True
        self.show_progress = progress
        self.samples: list[dict] = []
        self.server_cpu: list[dict] = []
        self.floors: list[dict] = []
        self.probes: list[dict] = []
        self.throughput: list[dict] = []
        self.targets: dict[str, Any] | None = None
        self.questions: dict[str, Any] | None = None
        self.meter: CpuMeter | None = None
        self._seq = 0
        self._pool: ClientPool | None = None

    def _cells(self) -> int:
        c = self.config
        scaled = sum(1 for op in c.operations if SCENARIOS[op].scaled)
        per_rtt = len(c.operations) + scaled * (len(c.scales) - 1) + 1 + len(c.modes) * len(
            c.clients)
        return (len(c.rtts) * (c.repeat * per_rtt + 1) + int(c.security)
                + int(self._measures_targets()) + (len(QUESTIONS) if c.questions else 0))

    def _measures_targets(self) -> bool:
        """Targets need the bench's own server (its pid) and a 0 ms RTT cell."""
        c = self.config
        return c.targets and c.server_url is None and 0.0 in c.rtts

    def _client(self, url: str) -> ClientConfig:
        return ClientConfig(url, token=self.token, verify=self.verify)

    def run(self, command: Sequence[str] = ()) -> dict[str, Any]:
        """Run every configured cell; return the results document."""
        config = self.config
        started = datetime.datetime.now(datetime.timezone.utc)
        clock = time.monotonic()
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            db_url = config.db
            if db_url == "sqlite":
                db_url = f"sqlite:///{tmp / 'bench.db'}"
            direct = sa.create_engine(db_url)
            stack.callback(direct.dispose)
            server_url = config.server_url
            server = None
            if server_url is None:
                server = stack.enter_context(ServerProcess(
                    db_url, "--operations", OPERATIONS_MODULE,
                    tls_dir=tmp / "tls" if config.tls else None,
                ))
                server_url = server.url
                self.token = server.token
                self.verify = server.verify
                self.meter = CpuMeter(server.process.pid)
            env = environment(direct)
            deployment = self._deployment(server, server_url)
            network = self._network(direct, server_url)
            progress = Progress(self._cells(), stream=None if self.show_progress else _Null())
            db_port = None if env["backend"] == "sqlite" else (
                sa.engine.make_url(db_url).port or {"postgresql": 5432, "mysql": 3306}[
                    env["backend"]]
            )
            stack.callback(self._close_pool)
            for repetition in range(config.repeat):
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
                        self._at_rtt(rtt, repetition, scale_index, ctx, operations, direct,
                                     db_url, server, server_url, db_port, progress)
            self._close_pool()
            if config.questions:
                qctx = QuestionContext(
                    db_url=db_url, server_url=server_url, token=self.token,
                    rtts=tuple(config.rtts), samples=config.samples, quick=config.quick,
                    inventory_results=config.inventory_results,
                    verify=self.verify,
                )
                self.questions = {}
                for question in QUESTIONS:
                    self.questions.update(measure_questions(qctx, [question.key]))
                    progress.step(f"question {question.key}", "questions")
            security = None
            if config.security:
                security = security_results(db_url)
                progress.step("attack suite", "security")
        finished = datetime.datetime.now(datetime.timezone.utc)
        return {
            "format": FORMAT,
            "command": list(command),
            "config": dataclasses.asdict(config),
            "environment": env,
            "deployment": deployment,
            "network": network,
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "wall_seconds": time.monotonic() - clock,
            "phase_seconds": progress.phases,
            "samples": self.samples,
            "server_cpu": self.server_cpu,
            "floors": self.floors,
            "probes": self.probes,
            "throughput": self.throughput,
            # Issue 16's Targets at 0 ms RTT (session_proxy_bench.targets_probe); None: not run.
            "targets": self.targets,
            "security": security,
            # The thread's questions (session_proxy_bench.questions); None: not run.
            "questions": self.questions,
        }

    def _at_rtt(self, rtt: float, repetition: int, scale_index: int, ctx: Context,
                operations: list[str], direct: sa.Engine, db_url: str,
                server: ServerProcess | None, server_url: str, db_port: int | None,
                progress: Progress) -> None:
        """The cells of one RTT at one scale: relays in front of the server and database."""
        config = self.config
        server_port = sa.engine.make_url(server_url).port
        with _maybe_relay(server_port, rtt) as server_relay, \
                _maybe_relay(db_port, rtt) as db_relay:
            proxy_url = server_url
            if server_relay is not None:
                scheme = server_url.split(":", 1)[0]
                proxy_url = f"{scheme}://127.0.0.1:{server_relay.port}"
            direct_url = _relayed_url(db_url, db_relay)
            label = f"rtt={rtt * 1000:g}ms r{repetition + 1}"
            if scale_index == 0:
                self._floors(direct_url, proxy_url, rtt, repetition)
                progress.step(f"floors {label}", "floors")
                if repetition == 0:
                    self._probes(direct, direct_url, proxy_url, rtt)
                    progress.step(f"probes {label}", "probes")
                if (repetition == 0 and rtt == 0 and server is not None
                        and self._measures_targets()):
                    self.targets = measure_targets(db_url, server, config.throughput_seconds)
                    progress.step("targets rtt=0ms", "targets")
            for op in self._interleaved(operations, direct, direct_url, proxy_url, ctx, rtt,
                                        repetition):
                progress.step(f"{op} {label} n={ctx.tasks_per_dag}", "latency")
            if scale_index == 0:
                ensure_client_jobs(direct, max(config.clients))
                for clients in config.clients:
                    for mode in rotated(config.modes, repetition):
                        self._throughput(mode, clients, direct_url, proxy_url, rtt, ctx,
                                         repetition)
                        progress.step(f"throughput {mode} x{clients} {label}",
                                      "throughput")

    def _deployment(self, server: ServerProcess | None, server_url: str) -> dict[str, Any]:
        tls = server_url.startswith("https:")
        if server is None:
            return {"server": "outside the benchmark", "serving": None, "tls": tls,
                    "authentication": "bearer token" if self.token else None,
                    "idempotency_keys": True, "server_pid": None, "server_cpu_meter": None,
                    "clients_are_processes": True}
        return {
            "server": "session-proxy-server, one process",
            # server/serving.py: waitress serves HTTP, cheroot HTTPS.
            "serving": "cheroot" if tls else "waitress",
            "tls": tls,
            "authentication": "bearer tokens, verified with the signing key's public half",
            # session_proxy/transport.py: every pipeline request and logical call has one.
            "idempotency_keys": True,
            "server_pid": server.process.pid,
            "threads": THREADS,
            "server_cpu_meter": METER_SOURCE,
            "clients_are_processes": True,
        }

    def _network(self, direct: sa.Engine, server_url: str) -> dict[str, Any]:
        db = database_tls(direct)
        client_server: dict[str, Any] = {"tls": server_url.startswith("https:")}
        if client_server["tls"]:
            client_server.update(https_session(server_url, self.verify))
        client_database = {"tls": db["used"], "database_offers_tls": db["offered"],
                           "checked_with": db["checked_with"]}
        server_database = dict(client_database)
        if db["used"] is not None:
            # The server connects with the same URL and driver as the direct client.
            server_database["checked_with"] = "same URL and driver as client_database"
        return {
            # What the latency relay charges (benchmarks/relay.py).
            "relay_handshake": True,
            "legs": {
                "client_server": client_server,
                "client_database": client_database,
                "server_database": server_database,
            },
        }

    def _interleaved(self, operations: list[str], direct: sa.Engine, direct_url: str,
                     proxy_url: str, ctx: Context, rtt: float,
                     repetition: int) -> Iterator[str]:
        """Every operation's cell at this RTT and scale, the modes interleaved per round;
        yields each operation once its cell is done."""
        modes = self.config.modes
        runners: dict[str, ModeRunner] = {}
        try:
            for mode in modes:
                runners[mode] = ModeRunner(mode, db_url=direct_url, server_url=proxy_url,
                                           token=self.token, verify=self.verify)
                runners[mode].warm()
            for op in operations:
                self._cell(runners, direct, SCENARIOS[op], ctx, rtt, repetition)
                yield op
        finally:
            for runner in runners.values():
                runner.close()

    def _cell(self, runners: dict[str, ModeRunner], direct: sa.Engine, scenario: Any,
              ctx: Context, rtt: float, repetition: int) -> None:
        config = self.config
        cell = {"operation": scenario.name, "rtt_ms": rtt * 1000,
                "tasks_per_dag": ctx.tasks_per_dag, "repetition": repetition}
        pending: dict | None = None  # the last sample, until its CPU window closes
        for i in range(config.warmup + config.samples):
            for position, mode in enumerate(rotated(config.modes, i)):
                runner = runners[mode]
                if scenario.prepare is not None:
                    with direct.begin() as conn:
                        scenario.prepare(conn, i, ctx)
                args, kwargs = scenario.arguments(i, ctx)
                self._close_window(pending)
                before = runner.snapshot()
                started = time.perf_counter()
                runner.call(scenario.operation, *args, **kwargs)
                latency = time.perf_counter() - started
                spent = runner.snapshot() - before
                background.drain(30.0)  # a read-only COMMIT sent after the answer
                self._seq += 1
                pending = None
                if i < config.warmup:
                    continue
                pending = {
                    **cell, "mode": mode, "round": i - config.warmup, "position": position,
                    "seq": self._seq, "latency_s": latency,
                    "round_trips": None if mode == "direct" else spent.round_trips,
                    "request_bytes": spent.request_bytes,
                    "response_bytes": spent.response_bytes,
                    "statements": spent.statements,
                    "server_s": spent.server_seconds if mode != "direct" else None,
                    "txn_s": spent.transaction_seconds,
                    "server_cpu_s": None,
                }
                self.samples.append(pending)
        if scenario.prepare is not None:
            with direct.begin() as conn:
                restore_live_run(conn, ctx)
        self._close_window(pending)
        for mode in config.modes:
            spent_cpu = [s["server_cpu_s"] for s in self.samples[-config.samples * len(
                config.modes):] if s["mode"] == mode]
            measured = [v for v in spent_cpu if v is not None]
            total = sum(measured) if measured else None
            self.server_cpu.append({
                **cell, "mode": mode, "calls": len(spent_cpu), "server_cpu_s": total,
                "per_call_s": None if total is None else total / len(spent_cpu),
            })

    def _close_window(self, sample: dict | None) -> None:
        """Give ``sample`` the server CPU since its call started; start the next window."""
        if self.meter is None:
            return
        spent = self.meter.mark()
        if sample is not None and sample["mode"] != "direct":
            sample["server_cpu_s"] = spent

    def _floors(self, direct_url: str, proxy_url: str, rtt: float, repetition: int) -> None:
        """Direct SELECT 1, HTTP echo and a one-row SELECT through the proxy, interleaved.

        The proxy SELECT runs in AUTOCOMMIT on a lease kept open, so each
        sample is exactly one round trip carrying one statement.
        ``proxy_select_txn`` is the same SELECT in a transaction kept open
        (non-AUTOCOMMIT), as the direct ``db_select_1`` runs it (SQLAlchemy
        begins on first use): the Targets' proxy ÷ direct SQLAlchemy ratio.
        """
        engine = sa.create_engine(direct_url)
        client = self._client(proxy_url)
        proxy = session_proxy.create_engine(client, isolation_level="AUTOCOMMIT")
        in_txn = session_proxy.create_engine(client)
        transport = HTTPTransport(client)
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
                                            "repetition": repetition,
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
            engines["proxy"] = session_proxy.create_engine(self._client(proxy_url))
        try:
            found = run_probes(direct, engines, rtt, self.config.probe_samples)
        finally:
            for engine in engines.values():
                engine.dispose()
        self.probes.extend(dict(probe, repetition=0) for probe in found)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _throughput(self, mode: str, clients: int, direct_url: str, proxy_url: str, rtt: float,
                    ctx: Context, repetition: int) -> None:
        if self._pool is None:
            self._pool = ClientPool(max(self.config.clients))
        spec = ClientSpec(mode=mode, db_url=direct_url, server_url=proxy_url, token=self.token,
                          verify=self.verify, tasks_per_dag=ctx.tasks_per_dag,
                          runs_per_dag=ctx.runs_per_dag)
        if self.meter is not None:
            self.meter.mark()
        done = self._pool.run(spec, clients, self.config.throughput_seconds)
        cpu = self.meter.mark() if self.meter is not None and mode != "direct" else None
        every = done.latencies
        self.throughput.append({
            "mode": mode,
            "clients": clients,
            "rtt_ms": rtt * 1000,
            "repetition": repetition,
            "operations": len(every),
            "seconds": done.seconds,
            "throughput": len(every) / done.seconds if done.seconds else 0.0,
            "p50_s": percentile(every, 50) if every else None,
            "p99_s": percentile(every, 99) if every else None,
            "errors": dict(done.errors),
            "clients_are_processes": True,
            "client_pids": done.pids,
            "latencies_s": [round(value, 6) for value in every],
            "server_cpu_s": cpu,
            "server_cpu_per_call_s": cpu / len(every) if cpu is not None and every else None,
        })

class _Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
