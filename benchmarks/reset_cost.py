"""What the reset between leases costs, per backend: microseconds and round trips.

``python -m session_proxy_bench.reset_cost URL [URL ...]`` checks out one pooled
connection of the server's own engine, runs a one-statement transaction on
it and then its backend's ``reset_session`` (:mod:`session_proxy_server.backends`), many
times, and prints the median and 95th percentile of the reset alone.  Round trips are counted by
wrapping the driver's network send (psycopg: ``PGconn.send_query``/``exec_``;
pymysql: ``Connection._write_bytes``, one per command); SQLite has none (it
runs in-process).  Run it with ``PSYCOPG_IMPL=python`` to count PostgreSQL's
round trips, without to time them.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from session_proxy_server import backends
from session_proxy_server.config import ServerConfig
from session_proxy_server.database import create_engine_for


def _count_round_trips(dbapi_connection: Any, driver: str) -> list[int]:
    """Patch the driver so every request it sends adds one to the returned counter.

    psycopg is counted only with its pure-Python libpq wrapper
    (``PSYCOPG_IMPL=python``), whose PGconn methods can be wrapped.
    """
    counter = [0]
    if driver == "pymysql":
        original = dbapi_connection._write_bytes

        def write(data: bytes) -> None:
            counter[0] += 1
            original(data)

        dbapi_connection._write_bytes = write
    elif driver == "psycopg":
        from psycopg import pq

        if pq.__impl__ != "python":
            counter[0] = -(10**9)  # not countable: reported as unknown
            return counter
        for name in ("send_query", "send_query_params", "send_query_prepared", "exec_",
                     "exec_params", "exec_prepared"):
            original = getattr(pq.PGconn, name)

            def counted(self: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
                counter[0] += 1
                return _original(self, *args, **kw)

            setattr(pq.PGconn, name, counted)
    return counter


def measure(url: str, rounds: int = 2000) -> dict[str, float]:
    """Median and p95 of one reset in µs, and its round trips, on ``url``."""
    engine = create_engine_for(url, ServerConfig(max_transactions=1))
    driver = engine.dialect.driver
    backend = backends.for_engine(engine)
    pooled = engine.raw_connection()
    conn = pooled.dbapi_connection
    counter = _count_round_trips(conn, driver)
    timings = []
    trips = []
    try:
        for _ in range(rounds):
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
            conn.commit()
            before = counter[0]
            started = time.perf_counter()
            backend.reset_session(conn, 300.0, pooled.info)
            timings.append((time.perf_counter() - started) * 1e6)
            trips.append(counter[0] - before)
    finally:
        pooled.close()
        engine.dispose()
    timings.sort()
    return {
        "median_us": statistics.median(timings),
        "p95_us": timings[int(len(timings) * 0.95)],
        "round_trips": statistics.median(trips) if counter[0] >= 0 else float("nan"),
    }


def main(argv: list[str]) -> None:
    for url in argv:
        result = measure(url)
        print(f"{url.split('://')[0]}: reset median {result['median_us']:.0f} µs, "
              f"p95 {result['p95_us']:.0f} µs, round trips {result['round_trips']:g}")


if __name__ == "__main__":
    main(sys.argv[1:])
