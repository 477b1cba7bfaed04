"""Start and stop a ``session-proxy-server`` subprocess.

Used by the benchmark, the demo, the compliance harness and the test suite:
the server runs as its own process on a free loopback port, exactly as a
user would start it, and its output goes to a log file that start-up errors
quote.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``session-proxy-server --db-url DB_URL *extra_args`` on a free loopback port."""

    def __init__(self, db_url: str, *extra_args: str, start_timeout: float = 30.0) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"session-proxy-server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "--db-url", db_url, "--port", str(self.port),
             "--log-level", "WARNING", *extra_args],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"session-proxy-server exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(
            f"session-proxy-server did not start in {timeout:g} s: {self.log_path.read_text()}"
        )

    def stop(self) -> None:
        """Terminate the server and wait for it to exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
