"""Start and stop a ``session-proxy-server`` subprocess for the benchmark and demo."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence

import requests


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``session-proxy-server`` in front of ``db_url`` on a free loopback port."""

    def __init__(self, db_url: str, extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "--db-url", db_url, "--port", str(self.port),
             "--log-level", "WARNING", *extra_args],
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url + "/v1/health", timeout=1)
                return
            except requests.RequestException:
                if self.process.poll() is not None:
                    raise RuntimeError("session-proxy-server exited during start-up") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("session-proxy-server did not start within 30 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the server and wait for it to exit."""
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
