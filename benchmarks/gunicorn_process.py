"""Start and stop the server under gunicorn, as it is deployed.

:class:`GunicornProcess` is :class:`~session_proxy_server.testing.ServerProcess`
for the production set-up: ``gunicorn --workers 1 --threads N
session_proxy_server.wsgi:app`` on a free loopback port, configured through
the ``SESSION_PROXY_*`` environment variables :mod:`session_proxy_server.wsgi` reads.  One
worker process, because a transaction lives in the process that opened it.

Authentication is on: the server verifies tokens with the public half of
:func:`session_proxy_server.testing.signing_key`, and :attr:`GunicornProcess.token`
is an ``admin`` token signed with its private half.  gunicorn's output goes
to a log file that start-up failures quote.  The gunicorn used is the one
installed next to the running Python (the ``gunicorn`` extra).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from session_proxy_server.testing import (
    ServerProcess,
    child_pythonpath,
    free_port,
    issue,
    signing_key,
)


def gunicorn_path() -> str | None:
    """The ``gunicorn`` script next to ``sys.executable``, or None if not installed."""
    return shutil.which("gunicorn", path=str(Path(sys.executable).parent))


class GunicornProcess(ServerProcess):
    """``gunicorn ... session_proxy_server.wsgi:app`` with THREADS threads, in front of ``db_url``.

    :param db_url: the database's SQLAlchemy URL (``SESSION_PROXY_DB_URL``).
    :param threads: gunicorn worker threads: requests served at once.
    :param operations: modules whose ``@remote_operation`` functions the
        server exposes (``SESSION_PROXY_OPERATIONS``).
    :param env_extra: more environment variables, e.g.
        ``{"SESSION_PROXY_LEASE_SECONDS": "5"}``.
    :param start_timeout: seconds to wait for ``/v1/health`` to answer.
    """

    def __init__(
        self,
        db_url: str,
        threads: int = 40,
        operations: Iterable[str] = (),
        env_extra: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        gunicorn = gunicorn_path()
        if gunicorn is None:
            raise RuntimeError(
                f"gunicorn is not installed next to {sys.executable} "
                "(pip install 'session-proxy[gunicorn]')"
            )
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.db_url = db_url
        self.threads = threads
        self.operations = tuple(operations)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.verify = True
        #: A token for the ``admin`` role.
        self.token = issue()
        env = dict(
            os.environ,
            SESSION_PROXY_DB_URL=db_url,
            SESSION_PROXY_PUBLIC_KEY=str(signing_key()[1]),
            SESSION_PROXY_OPERATIONS=",".join(self.operations),
            PYTHONPATH=child_pythonpath(),
        )
        env.pop("SESSION_PROXY_INSECURE_NO_AUTH", None)
        env.update(env_extra or {})
        self._env = env
        self._argv = [
            gunicorn, "--workers", "1", "--threads", str(threads),
            "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
            "--graceful-timeout", "10", "session_proxy_server.wsgi:app",
        ]
        self._launch("session-proxy-gunicorn", start_timeout)
