"""Client CPU per proxied statement, against the same statement run directly.

``python -m session_proxy_bench.client_profile [--db-url URL] [--requests N]``
starts the server under gunicorn (keep-alive, one worker, 8 threads; or,
with ``--server builtin``, the ``session-proxy-server`` command) in front of
``--db-url`` (default: a fresh SQLite file), opens a transaction,
and runs a one-row ``SELECT`` ``N`` times through the proxy engine and ``N``
times through a direct SQLAlchemy engine on the same database, in
interleaved rounds.  It prints the client process's CPU time
(:func:`time.process_time`) per statement for both, the difference, and,
with ``--profile``, the top of a :mod:`cProfile` run of the proxy loop and
the share of client CPU spent per library.

The server is a separate process, so its CPU is not counted: what is
measured is what the client library costs an application.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

import session_proxy
from session_proxy_server.testing import ServerProcess

from .gunicorn_process import GunicornProcess

TABLE = "client_profile_t"
SELECT = sa.text(f"SELECT v FROM {TABLE} WHERE id = :id")

#: Profile buckets: a substring of the function's file name, and its label.
BUCKETS: tuple[tuple[str, str], ...] = (
    ("/requests/", "requests"),
    ("/urllib3/", "urllib3"),
    ("http/client.py", "http.client"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/session_proxy/", "session_proxy"),
    ("socket", "socket/ssl"),
    ("ssl", "socket/ssl"),
)


def prepare(db_url: str) -> None:
    """Create the table with its one row, directly."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
        conn.execute(sa.text(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, v VARCHAR(20))"))
        conn.execute(sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (1, 'one')"))
    engine.dispose()


def cpu_per_statement(conn: sa.Connection, count: int) -> float:
    """Client CPU seconds per one-row SELECT, over ``count`` statements."""
    started = time.process_time()
    for _ in range(count):
        conn.execute(SELECT, {"id": 1}).fetchall()
    return (time.process_time() - started) / count


def measure(
    engines: dict[str, sa.Engine], count: int, rounds: int
) -> dict[str, list[float]]:
    """Interleaved rounds of ``count`` statements per engine, each in an open transaction."""
    samples: dict[str, list[float]] = {name: [] for name in engines}
    connections = {name: engine.connect() for name, engine in engines.items()}
    try:
        for conn in connections.values():
            conn.begin()
            cpu_per_statement(conn, 20)  # warm up: BEGIN, caches, the pooled socket
        for _ in range(rounds):
            for name, conn in connections.items():
                samples[name].append(cpu_per_statement(conn, count))
    finally:
        for conn in connections.values():
            conn.rollback()
            conn.close()
    return samples


def profile(conn_factory: Callable[[], sa.Connection], count: int, top: int) -> str:
    """A cProfile report of ``count`` proxied statements: library shares, then the top."""
    profiler = cProfile.Profile(time.process_time)
    with conn_factory() as conn:
        conn.begin()
        cpu_per_statement(conn, 20)
        profiler.enable()
        cpu_per_statement(conn, count)
        profiler.disable()
        conn.rollback()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    shares: dict[str, float] = {}
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        where = filename if filename != "~" else name
        label = next((b for key, b in BUCKETS if key in where), "other")
        shares[label] = shares.get(label, 0.0) + row[2]
    lines = ["share of client CPU (tottime) by library:"]
    for label, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        lines.append(f"  {label:<14} {100 * seconds / total:5.1f} %")
    lines.append(f"top {top} functions by own time ({count} statements):")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    for (filename, line, name), row in rows[:top]:
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        lines.append(
            f"  {1e6 * row[2] / count:7.1f} us/stmt  {row[1]:>6} calls  {short}:{line}({name})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", help="database (default: a fresh SQLite file)")
    parser.add_argument("--requests", type=int, default=500, help="statements per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile report")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--server", choices=("gunicorn", "builtin"), default="gunicorn",
        help="gunicorn (keep-alive) or the session-proxy-server command's own server",
    )
    args = parser.parse_args(argv)
    db_url = args.db_url or f"sqlite:///{tempfile.mkdtemp(prefix='client-profile-')}/p.db"
    prepare(db_url)
    server: ServerProcess = (
        GunicornProcess(db_url, threads=8) if args.server == "gunicorn" else ServerProcess(db_url)
    )
    with server:
        proxy = session_proxy.create_engine(server.url, token=server.token)
        direct = sa.create_engine(db_url)
        samples = measure({"direct": direct, "proxy": proxy}, args.requests, args.rounds)
        report = profile(proxy.connect, args.requests, args.top) if args.profile else ""
        proxy.dispose()
        direct.dispose()
    direct_us = 1e6 * statistics.median(samples["direct"])
    proxy_us = 1e6 * statistics.median(samples["proxy"])
    print(f"session_proxy from {Path(session_proxy.__file__).parent}")
    print(f"database {sa.make_url(db_url).get_backend_name()}, server {args.server}, "
          f"{args.rounds} rounds x {args.requests} statements, medians of rounds")
    print(f"client CPU per one-row SELECT: direct {direct_us:7.1f} us, "
          f"proxy {proxy_us:7.1f} us, proxy - direct {proxy_us - direct_us:7.1f} us "
          f"({proxy_us / direct_us:.1f}x)")
    if report:
        print(report)


if __name__ == "__main__":
    main()
