"""Compare HTTP servers for the same WSGI app, side by side in one run.

::

    python -m session_proxy_bench.serving_compare \\
        --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test_serve \\
        --servers werkzeug,cheroot,waitress,gunicorn,granian --samples 500

Every candidate serves ``session_proxy_server.wsgi:app`` (configured by
environment, without authentication) against the same database, on its own
loopback port, each as its own process.  Per server the script measures:

- **select p50 / health p50**: one proxied one-row SELECT inside an open
  transaction (the real client, ``session_proxy.create_engine``), and one
  ``GET /v1/health`` on a keep-alive ``http.client`` connection (reopened
  when the server closes it); samples interleaved round-robin across servers;
- **CPU/request**: the server's CPU time (utime+stime of its process tree
  from ``/proc``) over ``--cpu-requests`` proxied SELECTs, per request;
- **tx/s**: one-row read transactions (begin, SELECT, commit) per second from
  4 client *processes* for ``--seconds``;
- ``workersN`` is ``session-proxy-server --workers N`` (waitress in N
  processes): the row to read for throughput;
- **half-open**: whether health still answers (and its latency) while 1,000
  connections are held open, half of them having sent half a request line.

It prints a Markdown table (what docs/serving.md quotes).  Compare ratios
from one run, never absolute times across runs.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from session_proxy_server.testing import child_pythonpath, free_port, stop_process

from .processes import tree_cpu_seconds

THREADS = 16


def serve(name: str, port: int) -> None:
    """Serve ``session_proxy_server.wsgi:app`` in this process with ``name``."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from session_proxy_server.serving import ServingOptions, listen_socket, make_server
    from session_proxy_server.wsgi import app

    if name in ("werkzeug", "waitress"):  # waitress: session-proxy-server's default
        options = ServingOptions(threads=THREADS, dev_server=name == "werkzeug",
                                 max_connections=256 if name == "werkzeug" else 2000)
        make_server(app, [listen_socket("127.0.0.1", port)], options).serve_forever()
    elif name == "cheroot":
        from cheroot.wsgi import Server

        Server(("127.0.0.1", port), app, numthreads=THREADS, timeout=15).safe_start()
    else:
        raise SystemExit(f"unknown in-process server {name!r}")


def _command(name: str, port: int) -> list[str]:
    """The command line that starts server ``name`` on ``port``."""
    bindir = Path(sys.executable).parent
    if name == "gunicorn":
        return [str(bindir / "gunicorn"), "--workers", "1", "--worker-class", "gthread",
                "--threads", str(THREADS), "--bind", f"127.0.0.1:{port}", "--log-level",
                "warning", "session_proxy_server.wsgi:app"]
    if name == "granian":
        return [str(bindir / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--blocking-threads", str(THREADS),
                "--log-level", "warning", "session_proxy_server.wsgi:app"]
    if name.startswith("workers"):  # session-proxy-server --workers N
        return [sys.executable, "-m", "session_proxy_server.cli", "--db-url",
                os.environ["SESSION_PROXY_DB_URL"], "--insecure-no-auth", "--port", str(port),
                "--workers", name.removeprefix("workers"), "--worker-port-base", "0",
                "--threads", str(THREADS), "--log-level", "WARNING"]
    return [sys.executable, "-m", "session_proxy_bench.serving_compare", "--serve", name,
            "--port", str(port)]


class Candidate:
    """One server process on its own port."""

    def __init__(self, name: str, db_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, SESSION_PROXY_DB_URL=db_url, SESSION_PROXY_INSECURE_NO_AUTH="1",
                   SESSION_PROXY_INSTANCE=name, PYTHONPATH=child_pythonpath())
        self.log = open(Path(tempfile.gettempdir()) / f"serving-compare-{name}.log", "wb")  # noqa: SIM115
        os.environ["SESSION_PROXY_DB_URL"] = db_url
        self.process = subprocess.Popen(_command(name, self.port), env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not _health_once(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.log.name}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """utime+stime of the server process and its descendants."""
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _health_once(port: int, timeout: float = 1.0) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", "/v1/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


class HealthClient:
    """GET /v1/health on one keep-alive connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.connections = 0

    def get(self) -> None:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.connections += 1
        self.conn.request("GET", "/v1/health")
        response = self.conn.getresponse()
        response.read()
        if response.will_close:
            self.conn.close()
            self.conn = None


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


class OpenSelect:
    """Runs one SELECT (when called) inside a transaction opened here; ``close`` ends it."""

    def __init__(self, url: str) -> None:
        import session_proxy

        self.engine = session_proxy.create_engine(url)
        self.connection = self.engine.connect()
        self()  # begins the transaction

    def __call__(self) -> object:
        return self.connection.exec_driver_sql("SELECT 1").fetchall()

    def close(self) -> None:
        """Roll back and close, while the server still runs."""
        self.connection.close()
        self.engine.dispose()


def _client_loop(url: str, seconds: float, counts: multiprocessing.Queue) -> None:
    import session_proxy

    engine = session_proxy.create_engine(url)
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT 1").fetchall()
        done += 1
    engine.dispose()
    counts.put(done)


def throughput(url: str, seconds: float, processes: int = 4) -> float:
    """Read transactions per second from ``processes`` client processes."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_client_loop, args=(url, seconds, counts))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def half_open(port: int, count: int) -> tuple[int, int, float]:
    """(connections held, health answers out of 5, health p50 s) under ``count`` half-open."""
    held = []
    for index in range(count):
        sock = socket.socket()
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
            if index % 2:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x")
        except OSError:
            sock.close()
            continue
        held.append(sock)
    time.sleep(0.5)
    answered, times = 0, []
    for _ in range(5):
        start = time.perf_counter()
        if _health_once(port, timeout=3.0):
            answered += 1
            times.append(time.perf_counter() - start)
    for sock in held:
        sock.close()
    return len(held), answered, statistics.median(times) if times else float("nan")


def compare(names: list[str], db_url: str, samples: int, cpu_requests: int,
            seconds: float, half_open_count: int = 1000) -> list[dict[str, object]]:
    """Start every server, measure them, stop them; one row per server."""
    servers = [Candidate(name, db_url) for name in names]
    selects: dict[str, OpenSelect] = {}
    try:
        selects.update({s.name: OpenSelect(s.url) for s in servers})
        healths = {s.name: HealthClient(s.port) for s in servers}
        select_t: dict[str, list[float]] = {s.name: [] for s in servers}
        health_t: dict[str, list[float]] = {s.name: [] for s in servers}
        for _ in range(samples):
            for server in servers:
                select_t[server.name].append(_timed(selects[server.name]))
                health_t[server.name].append(_timed(healths[server.name].get))
        rows = []
        for server in servers:
            before = server.cpu_seconds()
            for _ in range(cpu_requests):
                selects[server.name]()
            cpu = (server.cpu_seconds() - before) / cpu_requests
            rows.append({
                "server": server.name,
                "select_p50_ms": statistics.median(select_t[server.name]) * 1e3,
                "health_p50_ms": statistics.median(health_t[server.name]) * 1e3,
                "health_connections": healths[server.name].connections,
                "cpu_us": cpu * 1e6,
            })
        for row, server in zip(rows, servers, strict=True):
            row["tx_per_s"] = throughput(server.url, seconds)
        for row, server in zip(rows, servers, strict=True):
            held, answered, p50 = half_open(server.port, half_open_count)
            row["half_open"] = f"{held} held: {answered}/5 health" + (
                f", p50 {p50 * 1e3:.1f} ms" if answered else "")
        return rows
    finally:
        for select in selects.values():
            select.close()
        for server in servers:
            server.stop()


def table(rows: list[dict[str, object]], samples: int, half_open_count: int = 1000) -> str:
    """The Markdown table of :func:`compare`'s rows."""
    lines = [
        f"| server | SELECT p50 ms | health p50 ms | TCP conns for {samples} health GETs "
        f"| server CPU µs/SELECT | tx/s, 4 client procs | {half_open_count:,} half-open |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['select_p50_ms']:.2f} | {r['health_p50_ms']:.2f} "
            f"| {r['health_connections']} | {r['cpu_us']:.0f} | {r['tx_per_s']:.0f} "
            f"| {r['half_open']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", default=os.environ.get("SESSION_PROXY_TEST_PG_URL"))
    parser.add_argument("--servers", default="werkzeug,waitress,cheroot,gunicorn,granian")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--cpu-requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--half-open", type=int, default=1000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if not args.db_url:
        parser.error("--db-url (or SESSION_PROXY_TEST_PG_URL) is required")
    rows = compare(args.servers.split(","), args.db_url, args.samples, args.cpu_requests,
                   args.seconds, args.half_open)
    print(table(rows, args.samples, args.half_open))
    return 0


if __name__ == "__main__":
    sys.exit(main())
