"""``session-proxy-bench``: run the comparison and turn its results into a report.

::

    session-proxy-bench run --quick --out results.json --report report/
    session-proxy-bench run --full --db postgresql+psycopg://postgres@127.0.0.1/test
    session-proxy-bench report results.json --out report/
    session-proxy-bench security --db postgresql+psycopg://postgres@127.0.0.1/test

``run`` measures the workload in direct, proxy and logical modes (see
:mod:`benchmarks.runner`), runs the attack suite, writes every raw sample
and outcome to one JSON file and prints a concise table; ``report`` writes
``report.md`` and a self-contained ``report.html`` computed only from that
file; ``security`` runs the attack suite alone and writes its matrix.
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

from .report import Heading, Paragraph, hide_passwords, render_markdown
from .report_security import security_section
from .runner import BenchConfig, Benchmark
from .scenarios import SCENARIOS
from .security.attacks import security_results
from .stats import group, summarize
from .workload.modes import MODES

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

PRESETS: dict[str, dict[str, Any]] = {
    # SQLite, under three minutes on two cores, the attack suite included.
    "quick": {
        "db": "sqlite",
        "rtts": [0.0, 0.001, 0.005],
        "scales": [10, 100],
        "clients": [1, 4],
        "samples": 10,
        "warmup": 2,
        "floor_samples": 20,
        "throughput_seconds": 1.5,
    },
    # PostgreSQL, within fifteen minutes on two cores.
    "full": {
        "db": PG_DEFAULT,
        "rtts": [0.0, 0.001, 0.005, 0.010],
        "scales": [10, 100, 500],
        "clients": [1, 8, 32],
        "samples": 25,
        "warmup": 3,
        "floor_samples": 50,
        "throughput_seconds": 4.0,
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


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="session-proxy-bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure direct, proxy and logical modes")
    preset = run.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="SQLite preset that finishes in under three minutes")
    preset.add_argument("--full", action="store_true",
                        help=f"PostgreSQL preset (default --db {PG_DEFAULT}) within 15 minutes")
    run.add_argument("--db", help="'sqlite' (a temporary file) or a SQLAlchemy URL")
    run.add_argument("--server-url", help="use this running server (started with "
                     "--operations benchmarks.workload.operations) instead of starting one")
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
    run.add_argument("--out", type=Path, default=Path("results.json"),
                     help="results JSON (default %(default)s)")
    run.add_argument("--report", type=Path, metavar="DIR", help="also write the report to DIR")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-security", action="store_false", dest="security", default=None,
                     help="skip the attack suite (the report's security section)")

    security = sub.add_parser(
        "security", help="run only the attack suite and write its matrix as Markdown")
    security.add_argument("--db", default="sqlite",
                          help="'sqlite' (a temporary file) or a SQLAlchemy URL")
    security.add_argument("--out", type=Path, default=Path("security.md"),
                          help="Markdown file (default %(default)s)")

    report = sub.add_parser("report", help="write report.md and report.html from a results file")
    report.add_argument("results", type=Path)
    report.add_argument("--out", type=Path, default=Path("report"), help="directory")
    return parser


def config_from(args: argparse.Namespace) -> BenchConfig:
    """The benchmark configuration the parsed arguments describe."""
    settings: dict[str, Any] = {}
    if args.quick:
        settings.update(PRESETS["quick"])
    elif args.full:
        settings.update(PRESETS["full"])
    for name in ("db", "server_url", "token", "operations", "modes", "rtts", "scales", "clients",
                 "samples", "warmup", "throughput_seconds", "security"):
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


def _write_report(results: dict[str, Any], out: Path) -> None:
    from .report import write_report

    markdown, html = write_report(results, out)
    print(f"report: {markdown} and {html}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``session-proxy-bench``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "security":
        return _security_only(args.db, args.out)
    if args.command == "report":
        try:
            results = json.loads(args.results.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read results file {args.results}: {exc}")
        _write_report(results, args.out)
        return 0
    try:
        config = config_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    command = ["session-proxy-bench", *(sys.argv[1:] if argv is None else argv)]
    results = Benchmark(config, progress=not args.no_progress).run(command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(summary_table(results))
    print(f"results: {args.out}")
    if args.report is not None:
        _write_report(results, args.report)
    return 0


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
