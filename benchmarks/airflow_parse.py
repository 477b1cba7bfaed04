"""Airflow's DAG processor: parse-and-sync time per DAG file, direct vs through the proxy.

::

    python -m session_proxy_bench.airflow_parse \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --files 20 --out airflow.json

Needs apache-airflow-core (``tox -e airflow`` installs it).  Two empty Airflow
databases per run (schemas ``sp_bench_0``, ``_1``, ``_2`` of ``--db``) are
migrated directly; then, in one child process per mode with only
``sql_alchemy_conn`` differing (the database URL, or
``sessionproxy://:TOKEN@host:port/`` in front of another schema; the third
mode also turns Airflow's ``sql_alchemy_pool_pre_ping`` off), each
generated DAG file is parsed and synced on its own, as the DAG processor
does per file: ``BundleDagBag`` on the file, then ``sync_bag_to_db``.  Pass
1 writes new DAGs, pass 2 re-syncs the unchanged files.  The modes run side
by side in one invocation, alternating, ``--repeat`` times; compare the ratio,
not absolute times across runs.  With ``--processor`` it also times
``airflow dag-processor --num-runs 1`` over the folder (whole process,
start-up included).  Server and client share the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from session_proxy_server.testing import ServerProcess

from .airflow_dags import write_dag_files
from .airflow_site import AirflowSite, fresh_schema

#: mode -> (through the proxy, extra Airflow settings)
MODES: dict[str, tuple[bool, dict[str, str]]] = {
    "direct": (False, {}),
    "proxy": (True, {}),
    # Airflow pings every checkout when the URL does not start with "sqlite":
    # through the proxy that is one more HTTP request per session.
    "proxy, no pre-ping": (True, {"AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_PRE_PING": "False"}),
}


def child(folder: str, out: str) -> None:
    """In an Airflow process: parse and sync each file twice; write timings to ``out``."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    requests_so_far = _request_counter(settings.engine)
    files = sorted(Path(folder).glob("*.py"))
    passes: list[list[dict[str, float]]] = []
    for _ in range(2):
        samples = []
        for path in files:
            before = requests_so_far()
            started = time.perf_counter()
            bag = BundleDagBag(dag_folder=str(path), bundle_path=folder,
                               bundle_name="dags-folder")
            parsed = time.perf_counter()
            sync_bag_to_db(bag, "dags-folder", None)
            done = time.perf_counter()
            samples.append({"parse_s": parsed - started, "sync_s": done - parsed,
                            "total_s": done - started,
                            "http_requests": requests_so_far() - before})
        passes.append(samples)
    Path(out).write_text(json.dumps({"new": passes[0], "unchanged": passes[1]}))


def _request_counter(engine: Any) -> Any:
    """A function counting the server's pipeline and health requests so far (0 direct)."""
    import requests

    from session_proxy.dialects.base import ProxyDialectMixin

    if not isinstance(engine.dialect, ProxyDialectMixin):
        return lambda: 0
    with engine.connect():
        pass  # the transport exists once a connection was made
    transport = engine.dialect.transport
    headers = {"Authorization": f"Bearer {engine.url.password}"}

    def count() -> int:
        text = requests.get(transport.base_url + "/v1/metrics", headers=headers, timeout=30).text
        return sum(
            int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
            if line.startswith("session_proxy_requests_total{")
            and ('endpoint="pipeline"' in line or 'endpoint="health"' in line)
        )

    return count


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples)
            for key in ("parse_s", "sync_s", "total_s", "http_requests")}


def measure(db: str, files: int, repeat: int, processor: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sp-airflow-bench-"))
    folder = tmp / "dags"
    write_dag_files(folder, range(files))
    results: dict[str, Any] = {"files": files, "repeat": repeat, "runs": []}
    for round_ in range(repeat):
        urls = {mode: fresh_schema(db, f"sp_bench_{index}") for index, mode in enumerate(MODES)}
        for index, mode in enumerate(MODES):
            AirflowSite(tmp / f"migrate-{index}", urls[mode]).airflow("db", "migrate")
        servers = {mode: ServerProcess(urls[mode]) for mode, (proxied, _) in MODES.items()
                   if proxied}
        try:
            run: dict[str, Any] = {}
            order = list(MODES) if round_ % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                server = servers.get(mode)
                conn = (f"sessionproxy://:{server.token}@127.0.0.1:{server.port}/"
                        if server else urls[mode])
                site = AirflowSite(tmp / f"home-{round_}-{order.index(mode)}", conn,
                                   dict(MODES[mode][1]), dags=folder)
                out = tmp / f"out-{round_}-{order.index(mode)}.json"
                site.python("session_proxy_bench.airflow_parse", "--child", str(folder), str(out))
                raw = json.loads(out.read_text())
                run[mode] = {name: _summary(samples) for name, samples in raw.items()}
                if processor:
                    run[mode]["processor_s"] = _time_processor(site)
        finally:
            for server in servers.values():
                server.stop()
        results["runs"].append(run)
    return results


def _time_processor(site: AirflowSite) -> float:
    started = time.perf_counter()
    site.airflow("dag-processor", "--num-runs", "1")
    return time.perf_counter() - started


def report(results: dict[str, Any]) -> str:
    """A Markdown table: medians per file for every mode, and the ratio to direct."""
    modes = list(results["runs"][0])
    modes.sort(key=list(MODES).index)

    def median(mode: str, *path: str) -> float:
        values = []
        for run in results["runs"]:
            value: Any = run[mode]
            for key in path:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    lines = [f"{results['files']} DAG files, {results['repeat']} run(s): medians per file", "",
             "| pass | measure | " + " | ".join(modes) + " | " +
             " | ".join(f"{m} / direct" for m in modes[1:]) + " |",
             "|---" * (2 + 2 * len(modes) - 1) + "|"]
    rows = [(name, key) for name in ("new", "unchanged")
            for key in ("parse_s", "sync_s", "total_s", "http_requests")]
    if "processor_s" in results["runs"][0][modes[0]]:
        rows.append(("folder", "processor_s"))
    for name, key in rows:
        path = (key,) if name == "folder" else (name, key)
        values = [median(mode, *path) for mode in modes]
        scale, label = (1000, f"{key[:-2]} ms") if key in ("parse_s", "sync_s", "total_s") else (
            (1, "`airflow dag-processor -n 1` s") if key == "processor_s" else (1, "HTTP requests"))
        shown = [f"{v * scale:.1f}" if scale == 1000 else f"{v:.2f}" if key == "processor_s"
                 else f"{v:.0f}" for v in values]
        ratios = [f"{v / values[0]:.2f}" if values[0] else "-" for v in values[1:]]
        lines.append(f"| {name} | {label} | " + " | ".join(shown + ratios) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="a PostgreSQL URL (two schemas are made in it)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--processor", action="store_true",
                        help="also time airflow dag-processor --num-runs 1 over the folder")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if not args.db:
        parser.error("--db is required")
    try:
        results = measure(args.db, args.files, args.repeat, args.processor)
    except (AssertionError, subprocess.SubprocessError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
