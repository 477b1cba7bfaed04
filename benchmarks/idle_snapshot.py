"""How long a read snapshot outlives its ``commit()``, now that readers commit without waiting.

``python -m session_proxy_bench.idle_snapshot --db postgresql+psycopg://...``
runs ``session.get(...)`` then ``commit()`` through a real server behind the
latency relay, at several round-trip times, and measures on PostgreSQL
itself (``pg_stat_activity``, polled from a direct connection) how long the
server's connection stays ``idle in transaction`` after ``commit()``
returned to the caller.  It prints one Markdown row per RTT: the median and
the largest such delay, and the round trips the caller waited for (which
must be 1).  The result is in docs/pipelining.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

import session_proxy
from session_proxy import background
from session_proxy_server.testing import ServerProcess

from .relay import Relay

_IDLE_IN_TRANSACTION = sa.text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
)


def _held_after_commit(
    engine: sa.Engine, watcher: sa.Connection, table: sa.Table, samples: int
) -> tuple[list[float], list[float], int]:
    """Seconds each read transaction stayed open after commit(), seconds each
    SELECT's round trip took, and the round trips waited for."""
    held: list[float] = []
    trips: list[float] = []
    waited = 0
    for _ in range(samples):
        background.drain(10)
        before = session_proxy.stats(engine).snapshot()
        with Session(engine) as session:
            started = time.perf_counter()
            session.execute(sa.select(table).where(table.c.id == 1)).all()
            trips.append(time.perf_counter() - started)
            session.commit()
            returned = time.perf_counter()
        waited += (session_proxy.stats(engine).snapshot() - before).round_trips
        while watcher.execute(_IDLE_IN_TRANSACTION).scalar():
            pass
        held.append(time.perf_counter() - returned)
    return held, trips, waited


def measure(db_url: str, rtts_ms: Sequence[float], samples: int) -> list[str]:
    """One Markdown table row per RTT."""
    direct = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    metadata = sa.MetaData()
    table = sa.Table("sp_idle_snapshot", metadata, sa.Column("id", sa.Integer, primary_key=True))
    metadata.drop_all(direct)
    metadata.create_all(direct)
    with direct.begin() as conn:
        conn.execute(table.insert(), [{"id": 1}])
    server = ServerProcess(db_url)
    rows = []
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with direct.connect() as watcher:
            for rtt in rtts_ms:
                relay = Relay(port, rtt=rtt / 1000).start()
                engine = session_proxy.create_engine(relay.url, token=server.token)
                try:
                    with engine.connect():
                        pass
                    held, trips, waited = _held_after_commit(engine, watcher, table, samples)
                finally:
                    engine.dispose()
                    relay.stop()
                rows.append(
                    f"| {rtt:g} ms | {statistics.median(trips) * 1000:.2f} ms | "
                    f"{statistics.median(held) * 1000:.2f} ms | "
                    f"{max(held) * 1000:.2f} ms | {waited / samples:g} |"
                )
    finally:
        server.stop()
        metadata.drop_all(direct)
        direct.dispose()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a PostgreSQL URL (psycopg)")
    parser.add_argument("--rtt", default="0,1,5,20", help="round-trip times in ms")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args(argv)
    rtts = [float(value) for value in args.rtt.split(",")]
    print("| relay RTT | one request, median | open after commit(), median | largest "
          "| round trips waited |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in measure(args.db, rtts, args.samples):
        print(row)


if __name__ == "__main__":
    main()
