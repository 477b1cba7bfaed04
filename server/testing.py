"""Start a real ``session-proxy-server`` in a subprocess, for tests and benchmarks.

This is the one shared helper for server processes: the test suite, the
benchmark (:mod:`session_proxy_bench`), the demo and the SQLAlchemy
compliance harness all start their servers through :class:`ServerProcess`.
The server runs as its own process on a free loopback port, exactly as a
user would start it (``python -m session_proxy_server.cli``), and its output
goes to a log file that start-up errors quote.

Authentication is on, as in production: the process verifies tokens with
the public half of a key pair made once per Python process
(:func:`signing_key`), and :attr:`ServerProcess.token` is a token for the
``admin`` role; :func:`issue` makes others.

Nothing here depends on a source checkout: the child process runs in the
caller's working directory and can import what the caller can
(:func:`child_pythonpath`), so ``--operations`` may name a module that is
importable only from the caller's ``sys.path`` (a test package, say).

Example::

    from session_proxy_server.testing import ServerProcess

    with ServerProcess("sqlite:////tmp/app.db") as server:
        engine = session_proxy.create_engine(server.url, token=server.token)
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

from session_proxy.wire import protocol
from session_proxy_server.auth import generate_keypair, issue_token, load_private_key

T = TypeVar("T")


def settled(read: Callable[[], T], quiet: float = 0.2) -> T:
    """``read()`` once two reads ``quiet`` seconds apart agree.

    For counts a server may still move after it answered (a session reset
    runs after the response is written).
    """
    last = read()
    while True:
        time.sleep(quiet)
        now = read()
        if now == last:
            return now
        last = now


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate ``process``; kill it if it has not exited after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a child Python that should import what this process imports.

    The directories on this process's ``sys.path`` that are not part of its
    interpreter (standard library, site-packages: the child has those anyway),
    e.g. the checkout root pytest put there, followed by this process's own
    ``PYTHONPATH``.
    """
    interpreter = {Path(p).resolve() for p in
                   (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths: list[str] = []
    for entry in sys.path:
        path = Path(entry or os.getcwd()).resolve()
        if not path.is_dir() or any(p == path or p in path.parents for p in interpreter):
            continue
        if str(path) not in paths:
            paths.append(str(path))
    inherited = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*paths, *([inherited] if inherited else [])])


@functools.cache
def signing_key() -> tuple[Path, Path]:
    """(private, public) key files made for this Python process."""
    directory = tempfile.mkdtemp(prefix="session-proxy-keys-")
    return generate_keypair(directory)


def issue(role: str = "admin", subject: str = "test-client", ttl_seconds: int = 86400) -> str:
    """A token signed by :func:`signing_key` (what ``token issue`` prints)."""
    private, _ = signing_key()
    return issue_token(
        load_private_key(private), subject=subject, role=role, ttl_seconds=ttl_seconds
    )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``session-proxy-server --db-url DB_URL *extra_args`` on a free loopback port.

    :param auth: verify tokens with :func:`signing_key`'s public key; without
        it the server runs with ``--insecure-no-auth``.
    :param tls_dir: serve HTTPS with a self-signed certificate kept in this
        directory; :attr:`verify` is then its path, for clients.
    """

    def __init__(
        self,
        db_url: str,
        *extra_args: str,
        start_timeout: float = 30.0,
        auth: bool = True,
        tls_dir: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.db_url = db_url
        self.port = port or free_port()
        scheme = "https" if tls_dir else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        #: What clients pass as ``verify``: the CA bundle, or True.
        self.verify: bool | str = str(Path(tls_dir) / "cert.pem") if tls_dir else True
        if tls_dir:
            extra_args = ("--tls-self-signed", str(tls_dir), *extra_args)
        #: A token for the ``admin`` role (``None`` without ``auth``).
        self.token = issue() if auth else None
        auth_args = ["--public-key", str(signing_key()[1])] if auth else ["--insecure-no-auth"]
        self._argv = [sys.executable, "-m", "session_proxy_server.cli", "--db-url", db_url,
                      "--port", str(self.port), "--log-level", "WARNING",
                      # Stopping waits this long for open transactions
                      # (``extra_args`` may say otherwise: the last one wins).
                      "--drain-seconds", "1",
                      *auth_args, *extra_args]
        self._env = dict(os.environ, PYTHONPATH=child_pythonpath())
        self._launch("session-proxy-server", start_timeout)

    def _launch(self, name: str, start_timeout: float) -> None:
        """Open the log file and start :attr:`_argv` with :attr:`_env`."""
        self.name = name
        self.log_path = Path(tempfile.gettempdir()) / f"{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self._start(start_timeout)

    def _start(self, start_timeout: float) -> None:
        self.process = subprocess.Popen(
            self._argv,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, kill: bool = False, start_timeout: float = 30.0) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``) and start it again
        on the same port, as a supervisor would after a crash or a deploy."""
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(30)
        self._start(start_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()}")
            try:
                health = requests.get(self.url + "/v1/health", timeout=1, verify=self.verify)
                if health.status_code == 200:
                    return
            except OSError:  # refused, or (with TLS) no certificate written yet
                time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} did not start in {timeout:g} s: {self.log_path.read_text()}"
        )

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header carrying :attr:`token`."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def metric(self, name: str, token: str | None = None) -> float:
        """One unlabelled value of ``/v1/metrics``, read with ``token`` (default: admin)."""
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers
        response = requests.get(self.url + protocol.METRICS_PATH, headers=headers, timeout=30,
                                verify=self.verify)
        response.raise_for_status()
        for line in response.text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"{name} is not in {self.name}'s metrics")

    def settled_metric(self, name: str, quiet: float = 0.3) -> float:
        """:meth:`metric` once it stopped moving (see :func:`settled`)."""
        return settled(lambda: self.metric(name), quiet)

    def stop(self) -> None:
        """Terminate the server and wait for it to exit."""
        stop_process(self.process, grace=15)
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
