"""Airflow's DAG processor: parse-and-sync time per DAG file, direct vs through the proxy.

::

    python -m session_proxy_bench.airflow_parse \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/test --files 20 --out airflow.json

Needs apache-airflow-core (``tox -e airflow`` installs it).  Two empty Airflow
databases (schemas ``sp_bench_direct`` and ``sp_bench_proxied`` of ``--db``)
are migrated directly; then, in one child process per mode with only
``sql_alchemy_conn`` differing (the database URL, or
``sessionproxy://:TOKEN@host:port/`` in front of the second schema), each
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

from .airflow_dags import write_dag_files
from .airflow_site import AirflowSite, fresh_schema
from .server_process import ServerProcess

MODES = ("direct", "proxy")


def child(folder: str, out: str) -> None:
    """In an Airflow process: parse and sync each file twice; write timings to ``out``."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    stats = _proxy_stats(settings.engine)
    files = sorted(Path(folder).glob("*.py"))
    passes: list[list[dict[str, float]]] = []
    for _ in range(2):
        samples = []
        for path in files:
            trips = stats.round_trips if stats else 0
            started = time.perf_counter()
            bag = BundleDagBag(dag_folder=str(path), bundle_path=folder,
                               bundle_name="dags-folder")
            parsed = time.perf_counter()
            sync_bag_to_db(bag, "dags-folder", None)
            done = time.perf_counter()
            samples.append({"parse_s": parsed - started, "sync_s": done - parsed,
                            "total_s": done - started,
                            "round_trips": (stats.round_trips - trips) if stats else 0})
        passes.append(samples)
    Path(out).write_text(json.dumps({"new": passes[0], "unchanged": passes[1]}))


def _proxy_stats(engine: Any) -> Any:
    import session_proxy

    try:
        return session_proxy.stats(engine)
    except TypeError:
        return None


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples)
            for key in ("parse_s", "sync_s", "total_s", "round_trips")}


def measure(db: str, files: int, repeat: int, processor: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sp-airflow-bench-"))
    folder = tmp / "dags"
    write_dag_files(folder, range(files))
    results: dict[str, Any] = {"files": files, "repeat": repeat, "runs": []}
    for round_ in range(repeat):
        urls = {"direct": fresh_schema(db, "sp_bench_direct"),
                "proxy": fresh_schema(db, "sp_bench_proxied")}
        for mode in MODES:
            AirflowSite(tmp / f"migrate-{mode}", urls[mode]).airflow("db", "migrate")
        with ServerProcess(urls["proxy"]) as server:
            conns = {"direct": urls["direct"],
                     "proxy": f"sessionproxy://:{server.token}@127.0.0.1:{server.port}/"}
            run: dict[str, Any] = {}
            for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                site = AirflowSite(tmp / f"home-{mode}-{round_}", conns[mode], dags=folder)
                out = tmp / f"{mode}-{round_}.json"
                site.python("session_proxy_bench.airflow_parse", "--child", str(folder), str(out))
                raw = json.loads(out.read_text())
                run[mode] = {name: _summary(samples) for name, samples in raw.items()}
                if processor:
                    run[mode]["processor_s"] = _time_processor(site)
        results["runs"].append(run)
    return results


def _time_processor(site: AirflowSite) -> float:
    started = time.perf_counter()
    site.airflow("dag-processor", "--num-runs", "1")
    return time.perf_counter() - started


def report(results: dict[str, Any]) -> str:
    """A Markdown table: medians per file, direct and proxy, and their ratio."""
    lines = [f"{results['files']} DAG files, {results['repeat']} run(s); medians per file",
             "", "| pass | measure | direct | proxy | proxy/direct |", "|---|---|---|---|---|"]
    for name in ("new", "unchanged"):
        for key, unit in (("parse_s", "ms"), ("sync_s", "ms"), ("total_s", "ms"),
                          ("round_trips", "")):
            direct = statistics.median(r["direct"][name][key] for r in results["runs"])
            proxy = statistics.median(r["proxy"][name][key] for r in results["runs"])
            scale = 1000 if unit else 1
            ratio = f"{proxy / direct:.2f}" if direct else "-"
            lines.append(f"| {name} | {key.removesuffix('_s')} {unit} | {direct * scale:.1f} | "
                         f"{proxy * scale:.1f} | {ratio} |")
    if "processor_s" in results["runs"][0]["direct"]:
        direct = statistics.median(r["direct"]["processor_s"] for r in results["runs"])
        proxy = statistics.median(r["proxy"]["processor_s"] for r in results["runs"])
        lines.append(f"| folder | `airflow dag-processor -n 1` s | {direct:.2f} | {proxy:.2f} | "
                     f"{proxy / direct:.2f} |")
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
