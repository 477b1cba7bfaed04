"""``session-proxy-bench``: run the comparison and turn its results into a report.

::

    session-proxy-bench run --quick --out results.json --report report/
    session-proxy-bench run --full --db postgresql+psycopg://postgres@127.0.0.1/test
    session-proxy-bench report results.json --out report/
    session-proxy-bench report docs/report-postgresql/results.json.xz --out docs/report-postgresql
    session-proxy-bench readme docs/report-postgresql/results.json.xz README.md
    session-proxy-bench security --db postgresql+psycopg://postgres@127.0.0.1/test
    session-proxy-bench load --clients 32 --seconds 60 --drop 0.01 --out load.json --report report/
    session-proxy-bench run --full --load-results load.json --out results.json --report report/
    session-proxy-bench run --full --inventory-results inventory.json --out results.json

``run`` measures the workload in direct, proxy, proxy_best and logical
modes against the server as deployed (HTTPS, tokens, idempotency keys;
see :mod:`session_proxy_bench.runner`), the modes interleaved sample by
sample and the grid repeated ``--repeat`` times, runs the attack suite, writes every raw sample
and outcome to one JSON file and prints a concise table; ``report`` writes
``report.md`` and a self-contained ``report.html`` computed only from that
file (``.json``, or compressed ``.json.gz``/``.json.xz``, which ``run --out``
writes deterministically), byte for byte the same on any machine;
``readme`` rewrites the README's "Results so far" block from such a file;
``security`` runs the attack suite alone and writes its matrix.

``load`` is the reliability load run (:mod:`session_proxy_bench.load.runner`):
concurrent clients against the server under gunicorn, through a relay that
drops a share of the responses, mixing the workload's operations with
transfers whose invariants are checked afterwards.  It writes its result
JSON (``--out``), prints a summary, optionally writes ``DIR/reliability.md``
(``--report DIR``), and exits with status 1 when an invariant was violated,
so it can gate.  ``run --load-results load.json`` embeds such a result under
the results' ``"reliability"`` key, and ``report`` then includes the
report's "Reliability under load" section; ``report load.json`` on a load
result alone writes ``reliability.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import Heading, Paragraph, hide_passwords, render_markdown, write_report
from .report.readme import report_link, results_block, update_readme
from .report.results_file import read_results, write_results
from .report.sections.reliability import reliability_section
from .report.sections.security import security_section
from .runner import BenchConfig, Benchmark
from .scenarios import SCENARIOS
from .security.attacks import security_results
from .stats import group, summarize
from .workload.modes import MODES

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

PRESETS: dict[str, dict[str, Any]] = {
    # SQLite, about four minutes on two cores, the attack suite included.
    "quick": {
        "db": "sqlite",
        "rtts": [0.0, 0.001, 0.005],
        "scales": [10, 100],
        "clients": [1, 4],
        "samples": 10,
        "warmup": 2,
        "floor_samples": 20,
        "probe_samples": 3,
        "throughput_seconds": 1.5,
        "repeat": 1,
        "quick": True,
    },
    # PostgreSQL, three repetitions of 10 samples per cell, about 15 minutes on
    # two idle cores with the attack suite, the Targets and the thread's
    # questions (the committed report's run took 830 s).
    "full": {
        "db": PG_DEFAULT,
        "rtts": [0.0, 0.001, 0.005, 0.010],
        "scales": [10, 100, 500],
        "clients": [1, 8, 32],
        "samples": 10,
        "warmup": 2,
        "floor_samples": 50,
        "probe_samples": 3,
        "throughput_seconds": 2.0,
        "repeat": 3,
    },
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)?\s*$")
_UNITS = {None: 0.001, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0}


def parse_duration(text: str) -> float:
    """``"5ms"`` -> 0.005 seconds; a bare number is milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"bad round-trip time {text!r}; use e.g. 0, 500us, 1ms, 0.01s"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def _list(kind: Any) -> Any:
    def parse(text: str) -> list:
        try:
            return [kind(item) for item in text.split(",") if item.strip()]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _mix(text: str) -> dict[str, float]:
    """``"transfer.proxy=4,workload=1"`` -> ``{"transfer.proxy": 4.0, "workload": 1.0}``."""
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, weight = item.partition("=")
        try:
            mix[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}") from None
    return mix


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="session-proxy-bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure direct, proxy, proxy_best and logical modes")
    preset = run.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="SQLite preset, one repetition, about three minutes")
    preset.add_argument("--full", action="store_true",
                        help=f"PostgreSQL preset (default --db {PG_DEFAULT}), three "
                        "repetitions, about 15 minutes")
    run.add_argument("--db", help="'sqlite' (a temporary file) or a SQLAlchemy URL")
    run.add_argument("--server-url", help="use this running server (started with --operations "
                     "session_proxy_bench.workload.operations) instead of starting one")
    run.add_argument("--token", default=os.environ.get("SESSION_PROXY_TOKEN"),
                     help="bearer token for --server-url (default: $SESSION_PROXY_TOKEN)")
    run.add_argument("--operations", type=_list(str),
                     help=f"comma-separated, from: {','.join(SCENARIOS)}")
    run.add_argument("--modes", type=_list(str), help=f"comma-separated, from: {','.join(MODES)}")
    run.add_argument("--rtt", type=_list(parse_duration), dest="rtts",
                     help="injected round-trip times, e.g. 0,1ms,5ms")
    run.add_argument("--tasks-per-dag", type=_list(int), dest="scales",
                     help="scales for mini_scheduler, create_dag_run, clear_task_instances")
    run.add_argument("--clients", type=_list(int), help="concurrent clients for throughput")
    run.add_argument("--samples", type=int, help="samples per cell")
    run.add_argument("--warmup", type=int, help="unrecorded samples per cell")
    run.add_argument("--throughput-seconds", type=float, help="length of each throughput run")
    run.add_argument("--repeat", type=int, metavar="N",
                     help="measure the whole grid of cells N times (default: 3 with --full, "
                     "else 1); every sample records its repetition")
    run.add_argument("--no-tls", action="store_false", dest="tls", default=None,
                     help="serve plain HTTP (waitress) instead of HTTPS (cheroot) with a "
                     "certificate made for the run; recorded in the results")
    run.add_argument("--ca", metavar="PEM",
                     help="CA bundle that verifies --server-url's certificate")
    run.add_argument("--out", type=Path, default=Path("results.json"),
                     help="results JSON (default %(default)s)")
    run.add_argument("--report", type=Path, metavar="DIR", help="also write the report to DIR")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-security", action="store_false", dest="security", default=None,
                     help="skip the attack suite (the report's security section)")
    run.add_argument("--no-targets", action="store_false", dest="targets", default=None,
                     help="skip the Targets' own measurements (server and client CPU, "
                     "database round trips, throughput with client processes)")
    run.add_argument("--no-questions", action="store_false", dest="questions", default=None,
                     help="skip the measurements answering the thread's questions")

    security = sub.add_parser(
        "security", help="run only the attack suite and write its matrix as Markdown")
    security.add_argument("--db", default="sqlite",
                          help="'sqlite' (a temporary file) or a SQLAlchemy URL")
    security.add_argument("--out", type=Path, default=Path("security.md"),
                          help="Markdown file (default %(default)s)")

    run.add_argument("--load-results", type=Path, metavar="LOAD_JSON",
                     help="embed this `load` result as the report's reliability section")
    run.add_argument("--inventory-results", type=Path, metavar="INVENTORY_JSON",
                     help="embed this Airflow inventory (python -m "
                     "session_proxy_bench.airflow_inventory) as the question 'inventory'")

    load = sub.add_parser(
        "load", help="reliability load run: concurrent clients, dropped responses, invariants")
    load.add_argument("--db", default=PG_DEFAULT,
                      help="SQLAlchemy URL of the database (default %(default)s)")
    load.add_argument("--clients", type=int, default=32, help="concurrent client threads")
    load.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    load.add_argument("--drop", type=float, default=0.01,
                      help="share of responses the relay drops (default %(default)s)")
    load.add_argument("--reset", type=float, default=0.0,
                      help="share of requests the relay resets before the server sees them")
    load.add_argument("--seed", type=int, default=20260101, help="seed of the faults and mix")
    load.add_argument("--mix", type=_mix,
                      help="weights, e.g. transfer.proxy=4,transfer.logical=3,workload=3")
    load.add_argument("--lease-seconds", type=float, default=5.0,
                      help="server lease: how long an orphaned transaction keeps its locks")
    load.add_argument("--out", type=Path, default=Path("load.json"),
                      help="result JSON (default %(default)s)")
    load.add_argument("--report", type=Path, metavar="DIR",
                      help="also write DIR/reliability.md")

    report = sub.add_parser("report", help="write report.md and report.html from a results file")
    report.add_argument("results", type=Path, help="results file (.json, .json.gz or .json.xz)")
    report.add_argument("--out", type=Path, default=Path("report"), help="directory")
    report.add_argument("--readme", type=Path, metavar="README",
                        help="also rewrite this README's results block from the same file")

    readme = sub.add_parser("readme", help="rewrite a README's results block from a results file")
    readme.add_argument("results", type=Path, help="results file (.json, .json.gz or .json.xz)")
    readme.add_argument("readme", type=Path, help="README with <!-- results:begin/end --> markers")
    return parser


def config_from(args: argparse.Namespace) -> BenchConfig:
    """The benchmark configuration the parsed arguments describe."""
    settings: dict[str, Any] = {}
    if args.quick:
        settings.update(PRESETS["quick"])
    elif args.full:
        settings.update(PRESETS["full"])
    for name in ("db", "server_url", "token", "operations", "modes", "rtts", "scales", "clients",
                 "samples", "warmup", "throughput_seconds", "repeat", "tls", "ca", "security",
                 "targets", "questions"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    return BenchConfig(**settings)


def summary_table(results: dict[str, Any]) -> str:
    """The concise stdout table: one line per operation, mode, RTT and scale."""
    lines = [f"{'operation':<22}{'mode':<9}{'rtt ms':>7}{'tasks':>6}{'p50 ms':>9}"
             f"{'p99 ms':>9}{'trips':>7}{'bytes':>9}{'txn ms':>8}"]
    keys = ["operation", "mode", "rtt_ms", "tasks_per_dag"]
    for (op, mode, rtt, scale), samples in group(results["samples"], keys).items():
        s = summarize(samples)
        trips = "-" if s["round_trips"] is None else f"{s['round_trips']:.0f}"
        size = (s["request_bytes"] or 0) + (s["response_bytes"] or 0)
        txn = "-" if s["txn_s"] is None else f"{s['txn_s'] * 1000:.2f}"
        lines.append(f"{op:<22}{mode:<9}{rtt:>7g}{scale:>6}{s['p50'] * 1000:>9.2f}"
                     f"{s['p99'] * 1000:>9.2f}{trips:>7}{size:>9.0f}{txn:>8}")
    return "\n".join(lines)


def readme_command(results_path: Path, readme: Path) -> str:
    """The command that writes the README block, as the block names it."""
    return f"session-proxy-bench readme {results_path.as_posix()} {readme.as_posix()}"


def _write_readme(results: dict[str, Any], results_path: Path, readme: Path) -> None:
    block = results_block(results, report_link(results_path, readme),
                          readme_command(results_path, readme))
    changed = update_readme(readme, block)
    print(f"readme: {readme} {'updated' if changed else 'unchanged'}")


def _write_report(results: dict[str, Any], out: Path) -> None:
    markdown, html = write_report(results, out)
    print(f"report: {markdown} and {html}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``session-proxy-bench``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = ["session-proxy-bench", *(sys.argv[1:] if argv is None else argv)]
    if args.command == "security":
        return _security_only(args.db, args.out)
    if args.command == "load":
        return _load(parser, args, command)
    if args.command in ("report", "readme"):
        return _report(parser, args)
    return _run(parser, args, command)


def _report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``session-proxy-bench report`` and ``readme``: write from a results file."""
    try:
        results = read_results(args.results)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read results file {args.results}: {exc}")
    if args.command == "report" and results.get("kind") == "load":
        print(f"reliability section: {_write_reliability(results, args.out)}")
        return 0
    if args.command == "report":
        _write_report(results, args.out)
    readme_path = args.readme
    if readme_path is not None:
        try:
            _write_readme(results, args.results, readme_path)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, command: list[str]) -> int:
    """``session-proxy-bench run``: measure, write the results and, if asked, the report."""
    try:
        config = config_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    if args.inventory_results is not None:
        try:
            json.loads(args.inventory_results.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read inventory results {args.inventory_results}: {exc}")
        config.inventory_results = str(args.inventory_results)
    load_results = None
    if args.load_results is not None:
        try:
            load_results = json.loads(args.load_results.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read load results {args.load_results}: {exc}")
    results = Benchmark(config, progress=not args.no_progress).run(command)
    if load_results is not None:
        results["reliability"] = load_results
    write_results(args.out, results)
    print(summary_table(results))
    print(f"results: {args.out}")
    if args.report is not None:
        _write_report(results, args.report)
    return 0


def _load(parser: argparse.ArgumentParser, args: argparse.Namespace,
          command: list[str]) -> int:
    """``session-proxy-bench load``: run, write the JSON, print the summary; 1 on violations."""
    from .load.runner import LoadConfig, run_load

    settings: dict[str, Any] = {
        "db_url": args.db, "clients": args.clients, "seconds": args.seconds,
        "drop_rate": args.drop, "reset_rate": args.reset, "seed": args.seed,
        "lease_seconds": args.lease_seconds,
    }
    if args.mix is not None:
        settings["mix"] = args.mix
    try:
        config = LoadConfig(**settings)
    except ValueError as exc:
        parser.error(str(exc))
    result = run_load(config, progress=lambda message: print(f"load: {message}", flush=True))
    result["command"] = command
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(load_summary(result))
    print(f"results: {args.out}")
    if args.report is not None:
        print(f"reliability section: {_write_reliability(result, args.report)}")
    return 0 if result["passed"] else 1


def load_summary(result: dict[str, Any]) -> str:
    """The concise stdout summary of a load run; violations are impossible to miss."""
    c, inv, relay = result["config"], result["invariants"], result.get("relay") or {}
    lat = result["latency_ms"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"load: {c['clients']} clients, {result['duration_s']:.1f} s, "
        f"{result['environment'].get('server', 'gunicorn')}; relay dropping "
        f"{c['drop_rate']:.1%} of responses",
        f"calls {result['ops']} ({result['ok']} ok, {result['errors']} failed); throughput "
        f"{result['throughput']:.1f}/s (ok {result['throughput_ok']:.1f}/s); latency p50 "
        f"{ms(lat['p50'])} ms, p95 {ms(lat['p95'])} ms, p99 {ms(lat['p99'])} ms",
        f"{'kind':<28}{'calls':>7}{'failed':>8}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>10}",
    ]
    for kind, s in result["per_kind"].items():
        lines.append(f"{kind:<28}{s['ops']:>7}{s['errors']:>8}{s['throughput']:>9.1f}"
                     f"{ms(s['latency_ms']['p50']):>9}{ms(s['latency_ms']['p99']):>10}")
    errors = ", ".join(f"{kind} {n}" for kind, n in result["errors_by_kind"].items())
    lines.append(f"errors: {errors or 'none'}")
    lines.append("relay: " + ", ".join(f"{kind} {n}" for kind, n in relay.items()))
    retries = result.get("client_retries") or {}
    lines.append("client retries: " + ", ".join(
        f"{side} {'not counted' if n is None else n}" for side, n in retries.items()))
    lines.append(
        f"invariants: sum {inv['total_actual']} (expected {inv['total_expected']}); "
        f"acknowledged {inv['acknowledged']}, missing {inv['acknowledged_missing_count']}; "
        f"duplicated {inv['duplicated_count']}; unknown {inv['unknown_present_count']}; "
        f"ledger {'consistent' if inv['ledger_consistent'] else 'INCONSISTENT'}; "
        f"unacknowledged {inv['unacknowledged']} (applied {inv['unacknowledged_present']}, "
        f"not applied {inv['unacknowledged_absent']})")
    if result["passed"]:
        lines.append("PASSED: zero invariant violations")
    else:
        bar = "!" * 72
        lines += [bar, f"FAILED: {inv['violations']} INVARIANT VIOLATIONS", bar]
    return "\n".join(lines)


def _write_reliability(result: dict[str, Any], out: Path) -> Path:
    """``out/reliability.md``: the reliability section of one load result."""
    env = result.get("environment", {})
    blocks = [Heading(1, f"session-proxy load run on {env.get('backend', 'a database')}"),
              Paragraph(f"Run from {result.get('started', 'not recorded')} to "
                        f"{result.get('finished', 'not recorded')} with "
                        f"`{' '.join(result.get('command') or ['session-proxy-bench load'])}`."),
              *reliability_section({"reliability": result})]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reliability.md"
    path.write_text(hide_passwords(render_markdown(blocks)))
    return path


def _security_only(db: str, out: Path) -> int:
    """``session-proxy-bench security``: the attack matrix without the measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{os.path.join(tmp, 'security.db')}" if db == "sqlite" else db
        results = {"security": security_results(db_url)}
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    blocks = [Heading(1, f"session-proxy attack suite on {results['security']['backend']}"),
              Paragraph(f"Run on {started} with `session-proxy-bench security`."),
              *security_section(results)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(hide_passwords(render_markdown(blocks)))
    print(f"security matrix: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
