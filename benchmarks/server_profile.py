"""Server CPU per request, and where it goes: one keep-alive client.

::

    python -m session_proxy_bench.server_profile --db-url postgresql+psycopg://... \\
        --requests 2000 --profile /tmp/server.prof

starts the server under gunicorn (one worker process, as deployed; with
``--server builtin``: ``session-proxy-server``'s own waitress), opens a
transaction, and sends ``--requests`` one-statement pipeline requests
(``SELECT 1`` in that open transaction) over one keep-alive HTTP connection.
The worker's CPU time (``utime + stime`` of ``/proc/<pid>/stat``) before and
after gives server CPU per request, and its threads' context switches
(``/proc/<pid>/task/*/status``) per request are printed too.  With ``--profile FILE`` a second
server runs the same requests under :mod:`cProfile` (one profiler per
worker thread, merged when the worker exits; its CPU is not the one
reported) and the top lines by own time are printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

from session_proxy.connections import ssl_context
from session_proxy.wire import protocol
from session_proxy_server.testing import ServerProcess

from .gunicorn_process import GunicornProcess
from .processes import context_switches, cpu_seconds

#: gunicorn configuration that profiles every thread of the worker.
_PROFILE_HOOKS = '''
import cProfile, os, threading
_local = threading.local()
_profiles = []
_lock = threading.Lock()

def _profiled(app):
    def call(environ, start_response):
        if getattr(_local, "profile", None) is None:
            _local.profile = cProfile.Profile()
            with _lock:
                _profiles.append(_local.profile)
            _local.profile.enable()  # stays on: gunicorn's own work in this thread too
        return app(environ, start_response)
    return call

def post_worker_init(worker):
    worker.wsgi = _profiled(worker.wsgi)

def worker_exit(server, worker):
    import pstats
    stats = None
    for profile in _profiles:
        profile.disable()
        profile.create_stats()
        stats = pstats.Stats(profile) if stats is None else stats.add(profile)
    if stats is not None:
        stats.dump_stats(os.environ["SESSION_PROXY_PROFILE_OUT"])
'''


class _Server(GunicornProcess):
    """:class:`GunicornProcess`, optionally with a gunicorn configuration file."""

    def __init__(self, db_url: str, threads: int, config: Path | None, env: dict[str, str]):
        self._config = config
        super().__init__(db_url, threads=threads, env_extra=env)

    def _launch(self, name: str, start_timeout: float) -> None:
        if self._config is not None:
            self._argv[1:1] = ["-c", str(self._config)]
        super()._launch(name, start_timeout)

    def worker_pid(self) -> int:
        """The pid of gunicorn's one worker process."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {children}")
        return int(children[0])


class Client:
    """One keep-alive HTTP (or, to an ``https`` server, HTTPS) connection sending
    pipeline requests."""

    def __init__(self, server: GunicornProcess | ServerProcess) -> None:
        if server.url.startswith("https:"):
            self.connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", server.port, timeout=30, context=ssl_context(server.verify))
        else:
            self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.headers = {
            "Authorization": f"Bearer {server.token}",
            "Content-Type": protocol.JSON_CONTENT_TYPE,
            protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
        }

    def pipeline(self, txn: str | None, steps: list[dict[str, Any]]) -> dict[str, Any]:
        body = json.dumps({"protocol": protocol.PROTOCOL_VERSION, "txn": txn, "steps": steps})
        self.connection.request("POST", protocol.PIPELINE_PATH, body, self.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"pipeline answered {response.status}: {data[:300]!r}")
        if response.getheader("Connection", "").lower() == "close":
            raise RuntimeError("the server closed the connection: no keep-alive")
        return json.loads(data)

    def close(self) -> None:
        self.connection.close()


SELECT = {"op": "execute", "sql": "SELECT 1", "params": None}


def run_requests(server: GunicornProcess | ServerProcess, count: int) -> None:
    """Open a transaction, run ``count`` one-statement requests in it, commit."""
    client = Client(server)
    try:
        txn = client.pipeline(None, [{"op": "begin"}, SELECT])["txn"]
        for _ in range(count):
            client.pipeline(txn, [SELECT])
        client.pipeline(txn, [{"op": "commit"}])
    finally:
        client.close()


def measure_cpu(db_url: str, count: int, threads: int,
                server_kind: str = "gunicorn") -> tuple[float, float]:
    """Server CPU microseconds and context switches per one-statement request."""
    server: GunicornProcess | ServerProcess
    if server_kind == "builtin":
        server = ServerProcess(db_url, "--threads", str(threads))
    else:
        server = _Server(db_url, threads, None, {})
    with server:
        run_requests(server, 200)  # warm-up: imports, caches, pool
        pid = server.worker_pid() if isinstance(server, _Server) else server.process.pid
        before, switches = cpu_seconds(pid), context_switches(pid)
        run_requests(server, count)
        requests = count + 2  # with the BEGIN and COMMIT requests
        return ((cpu_seconds(pid) - before) / requests * 1e6,
                (context_switches(pid) - switches) / requests)


def profile(db_url: str, count: int, threads: int, out: Path, top: int) -> None:
    """Run the requests under cProfile; write ``out`` and print the top lines."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "profile_hooks.py"
        config.write_text(_PROFILE_HOOKS)
        env = {"SESSION_PROXY_PROFILE_OUT": str(out)}
        with _Server(db_url, threads, config, env) as server:
            run_requests(server, 200)
            run_requests(server, count)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--profile", type=Path, help="also write a cProfile of the worker here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--server", choices=("gunicorn", "builtin"), default="gunicorn",
                        help="gunicorn, or the session-proxy-server command's own server")
    parser.add_argument("--rounds", type=int, default=1, help="measure this many times")
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        per_request, switches = measure_cpu(args.db_url, args.requests, args.threads,
                                            args.server)
        print(f"server CPU per one-statement pipeline request: {per_request:.0f} us, "
              f"{switches:.2f} context switches ({args.requests} requests, one keep-alive "
              f"connection, {args.server})", flush=True)
    if args.profile and args.server == "builtin":
        parser.error("--profile runs under gunicorn only")
    if args.profile:
        profile(args.db_url, args.requests, args.threads, args.profile, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
