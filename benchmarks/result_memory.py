"""How much memory the server holds for open long results.

Starts a ``session-proxy-server`` on a database, opens ``--cursors``
transactions that each run a ``--rows``-row SELECT (and read only its first
page), then rolls them back, printing the server process's resident set
size (RSS, from ``/proc``) at each point as JSON::

    python -m session_proxy_bench.result_memory --db-url postgresql+psycopg://postgres@127.0.0.1/test

The SELECT makes its rows itself (``generate_series`` on PostgreSQL,
MariaDB's ``seq_1_to_N`` tables, a recursive CTE on SQLite), so no table is
needed.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import requests

from session_proxy.wire import protocol
from session_proxy.wire.codec import dumps
from session_proxy_server.testing import ServerProcess


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def long_select(backend: str, rows: int) -> str:
    """A SELECT of ``rows`` rows of about 110 bytes each."""
    if backend == "postgresql":
        return f"SELECT g, repeat('x', 100) AS pad FROM generate_series(1, {rows}) AS g"
    if backend == "mysql":  # MariaDB's sequence engine
        return f"SELECT seq, repeat('x', 100) AS pad FROM seq_1_to_{rows}"
    return (
        f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows}) "
        "SELECT n, hex(zeroblob(50)) AS pad FROM g"
    )


def post(server: ServerProcess, steps: list[dict], txn: str | None = None) -> Any:
    response = requests.post(
        server.url + protocol.PIPELINE_PATH,
        data=dumps(protocol.pipeline_request(txn, steps)),
        headers={"Authorization": f"Bearer {server.token}",
                 "Content-Type": protocol.JSON_CONTENT_TYPE},
        timeout=600,
    )
    response.raise_for_status()
    return response.json()


def measure(db_url: str, rows: int, cursors: int) -> dict[str, Any]:
    """RSS before, with ``cursors`` long results open, and after rolling them back."""
    backend = db_url.split(":", 1)[0].split("+", 1)[0]
    backend = "mysql" if backend == "mariadb" else backend
    sql = long_select(backend, rows)
    with ServerProcess(db_url, "--statement-timeout", "600",
                       "--max-transaction-seconds", "900") as server:
        pid = server.process.pid
        post(server, [{"op": "begin"}, {"op": "execute", "sql": "SELECT 1", "params": None},
                      {"op": "rollback"}])
        result: dict[str, Any] = {"db": backend, "rows": rows, "cursors": cursors,
                                  "rss_before": rss_bytes(pid), "rss_open": []}
        txns = []
        for _ in range(cursors):
            body = post(server, [{"op": "begin"},
                                 {"op": "execute", "sql": sql, "params": None}])
            first = body["results"][1]
            assert "cursor" in first, "the result fit in one page"
            txns.append(body["txn"])
            result["rss_open"].append(rss_bytes(pid))
        for txn in txns:
            post(server, [{"op": "rollback"}], txn)
        time.sleep(1)
        result["rss_after_rollback"] = rss_bytes(pid)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cursors", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.db_url, args.rows, args.cursors)))


if __name__ == "__main__":
    main()
