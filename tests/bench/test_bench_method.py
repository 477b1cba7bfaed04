"""How the benchmark measures, read back from the results of tiny real runs on SQLite.

The deployed configuration (HTTPS with the run's own certificate, tokens,
idempotency keys), modes interleaved sample by sample in rotated order,
the grid repeated and each sample tagged with its repetition, throughput
clients in processes of their own, server CPU per call, the defaults and
the best-case opt-ins of the proxy as separate modes, and the record that
makes a run reproducible.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from session_proxy_bench.cli import build_parser, config_from
from session_proxy_bench.client_pool import (
    CLIENT_JOB_BASE,
    ClientPool,
    ClientSpec,
    ensure_client_jobs,
)
from session_proxy_bench.runner import BenchConfig, Benchmark, rotated
from session_proxy_bench.workload.models import Job
from session_proxy_bench.workload.seed import BASE_TIME, reset_schema, seed
from tests.conftest import REPO

MODES = ["direct", "proxy", "proxy_best", "logical"]
SAMPLES, WARMUP, REPEAT = 3, 1, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, int]:
    """A tiny default run (HTTPS) and the pid of the process that ran it."""
    out = tmp_path_factory.mktemp("method") / "results.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "session_proxy_bench.cli", "run",
         "--operations", "get_dag_run,xcom_push", "--modes", ",".join(MODES),
         "--rtt", "0,1ms", "--tasks-per-dag", "4", "--clients", "1,3",
         "--samples", str(SAMPLES), "--warmup", str(WARMUP), "--repeat", str(REPEAT),
         "--throughput-seconds", "0.3", "--no-progress", "--no-security", "--no-targets",
         "--no-questions", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, stderr = bench.communicate(timeout=600)
    assert bench.returncode == 0, stderr
    return json.loads(out.read_text()), bench.pid


def _cells(samples: list[dict]) -> dict[tuple, list[dict]]:
    cells = defaultdict(list)
    for s in samples:
        cells[(s["operation"], s["rtt_ms"], s["tasks_per_dag"], s["repetition"])].append(s)
    return cells


def test_the_grid_is_repeated_and_every_sample_tagged(run: tuple[dict, int]) -> None:
    results, _ = run
    assert results["format"] == 2 and results["config"]["repeat"] == REPEAT
    cells = _cells(results["samples"])
    assert {key[3] for key in cells} == set(range(REPEAT))
    assert len(cells) == 2 * 2 * REPEAT  # operations x RTTs x repetitions
    for samples in cells.values():
        assert sorted(s["mode"] for s in samples) == sorted(MODES * SAMPLES)
    assert {f["repetition"] for f in results["floors"]} == set(range(REPEAT))
    assert {(t["mode"], t["clients"], t["rtt_ms"], t["repetition"])
            for t in results["throughput"]} == {
        (mode, clients, rtt, rep) for mode in MODES for clients in (1, 3)
        for rtt in (0.0, 1.0) for rep in range(REPEAT)}


def test_modes_are_interleaved_round_by_round_in_rotated_order(run: tuple[dict, int]) -> None:
    results, _ = run
    seqs = [s["seq"] for s in results["samples"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for samples in _cells(results["samples"]).values():
        by_round = defaultdict(list)
        for s in sorted(samples, key=lambda s: s["seq"]):
            by_round[s["round"]].append(s)
        assert sorted(by_round) == list(range(SAMPLES))
        for number, calls in by_round.items():
            # One call per mode, back to back, in this round's rotation
            # (the warm-up rounds came first).
            assert [s["mode"] for s in calls] == rotated(MODES, number + WARMUP)
            assert [s["position"] for s in calls] == list(range(len(MODES)))
            assert [s["seq"] for s in calls] == list(range(calls[0]["seq"],
                                                          calls[0]["seq"] + len(MODES)))
        firsts = {calls[0]["mode"] for calls in by_round.values()}
        assert len(firsts) == SAMPLES  # no mode always goes first


def test_the_deployed_configuration_is_recorded(run: tuple[dict, int]) -> None:
    results, _ = run
    deployment, legs = results["deployment"], results["network"]["legs"]
    assert deployment["tls"] is True and deployment["serving"] == "cheroot"
    assert deployment["idempotency_keys"] is True and "bearer" in deployment["authentication"]
    assert results["network"]["relay_handshake"] is True
    client_server = legs["client_server"]
    assert client_server["tls"] is True and client_server["tls_version"].startswith("TLSv1.")
    assert client_server["verified_with"].endswith("cert.pem")
    # SQLite runs in-process: neither database leg applies.
    assert legs["client_database"]["tls"] is None and legs["server_database"]["tls"] is None


def test_throughput_clients_are_processes_of_their_own(run: tuple[dict, int]) -> None:
    results, bench_pid = run
    server_pid = results["deployment"]["server_pid"]
    for row in results["throughput"]:
        assert row["clients_are_processes"] is True
        pids = row["client_pids"]
        assert len(set(pids)) == len(pids) == row["clients"]
        assert not {bench_pid, server_pid} & set(pids)
        assert len(row["latencies_s"]) == row["operations"] > 0
        assert row["errors"] == {}


def test_server_cpu_per_call_is_measured_for_every_server_cell(run: tuple[dict, int]) -> None:
    results, _ = run
    for sample in results["samples"]:
        if sample["mode"] == "direct":
            assert sample["server_cpu_s"] is None
        else:
            assert sample["server_cpu_s"] > 0
    entries = results["server_cpu"]
    assert len(entries) == 2 * 2 * REPEAT * len(MODES)
    cells = _cells(results["samples"])
    for entry in entries:
        samples = [s for s in cells[(entry["operation"], entry["rtt_ms"],
                                     entry["tasks_per_dag"], entry["repetition"])]
                   if s["mode"] == entry["mode"]]
        assert entry["calls"] == len(samples) == SAMPLES
        if entry["mode"] == "direct":
            assert entry["server_cpu_s"] is None and entry["per_call_s"] is None
        else:
            assert entry["server_cpu_s"] == pytest.approx(
                sum(s["server_cpu_s"] for s in samples))
            assert entry["per_call_s"] == pytest.approx(entry["server_cpu_s"] / SAMPLES)
    for row in results["throughput"]:
        if row["mode"] == "direct":
            assert row["server_cpu_per_call_s"] is None
        else:
            assert row["server_cpu_per_call_s"] > 0


def test_proxy_defaults_and_best_case_are_separate_columns(run: tuple[dict, int]) -> None:
    results, _ = run
    trips = defaultdict(set)
    for s in results["samples"]:
        trips[(s["operation"], s["mode"])].add(s["round_trips"])
    # xcom_push's Core DELETE waits for its answer by default, rides with the COMMIT at best.
    assert trips[("xcom_push", "proxy")] == {2} and trips[("xcom_push", "proxy_best")] == {1}
    assert trips[("get_dag_run", "proxy")] == trips[("get_dag_run", "proxy_best")] == {1}


def test_the_run_records_what_reproducing_it_needs(run: tuple[dict, int]) -> None:
    results, _ = run
    env = results["environment"]
    assert re.fullmatch(r"[0-9a-f]{40}", env["git_commit"]) and isinstance(env["git_dirty"], bool)
    assert env["sqlalchemy"] == sa.__version__
    for library in ("psycopg", "pymysql", "werkzeug", "waitress", "cheroot", "cryptography",
                    "requests", "urllib3", "orjson"):
        assert env[library], library
    assert env["cores"] >= 1 and env["memory_gib"] > 0 and env["kernel"] and env["cpu"]
    assert env["backend_server"].startswith("SQLite 3.")
    phases = results["phase_seconds"]
    assert set(phases) == {"floors", "probes", "latency", "throughput"}
    assert all(seconds > 0 for seconds in phases.values())
    assert sum(phases.values()) <= results["wall_seconds"]


def test_no_tls_serves_plain_http_and_says_so(tmp_path: Path) -> None:
    args = build_parser().parse_args(["run", "--quick", "--no-tls", "--repeat", "2"])
    assert config_from(args).tls is False and config_from(args).repeat == 2
    assert config_from(build_parser().parse_args(["run", "--full"])).repeat == 3
    config = BenchConfig(operations=["get_variable"], modes=["proxy", "logical"], rtts=[0.0],
                         scales=[2], clients=[1], samples=1, warmup=0, floor_samples=1,
                         probe_samples=1, throughput_seconds=0.2, tls=False, security=False,
                         targets=False, questions=False)
    results = Benchmark(config, progress=False).run()
    assert results["deployment"]["tls"] is False
    assert results["deployment"]["serving"] == "waitress"
    assert results["network"]["legs"]["client_server"] == {"tls": False}
    assert {s["mode"] for s in results["samples"]} == {"proxy", "logical"}


def test_bad_repeat_and_client_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat must be >= 1"):
        BenchConfig(repeat=0)
    with pytest.raises(ValueError, match="client counts must be >= 1"):
        BenchConfig(clients=[0])


def test_a_cell_whose_clients_cannot_start_is_recorded_not_fatal(tmp_path: Path) -> None:
    # Nothing listens on port 1: the client's warm-up call fails at once.
    spec = ClientSpec(mode="direct", db_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
                      server_url=None, token=None, verify=True, tasks_per_dag=4,
                      runs_per_dag=3)
    with ClientPool(2) as pool:
        done = pool.run(spec, 2, 0.2)
        assert done.latencies == [] and done.pids == [] and sum(done.errors.values()) == 2
        assert all(kind.startswith("start: OperationalError") for kind in done.errors)
        # The pool is still usable: the next cell runs.
        database = tmp_path / "bench.db"
        engine = sa.create_engine(f"sqlite:///{database}")
        reset_schema(engine)
        with sessionmaker(bind=engine)() as session:
            seed(session)
            session.commit()
        ensure_client_jobs(engine, 2)
        good = dataclasses.replace(spec, db_url=f"sqlite:///{database}")
        done = pool.run(good, 2, 0.3)
        assert len(set(done.pids)) == 2 and done.latencies and not done.errors
        with engine.connect() as conn:  # each client heartbeats its own job
            beaten = conn.scalars(sa.select(Job.id).where(Job.latest_heartbeat > BASE_TIME))
            assert set(beaten) == {CLIENT_JOB_BASE + 1, CLIENT_JOB_BASE + 2}
        engine.dispose()
