"""``session-proxy-server --workers N``: N worker processes on one machine.

A transaction lives in the process that began it, so one process caps an
instance at one core.  With ``--workers N`` the command forks N workers.
Each one listens on two sockets:

- the **public port** (``--port``), bound by every worker with
  ``SO_REUSEPORT``: the kernel spreads new connections across the workers,
  so new transactions spread without a balancer;
- its **private port** (``--worker-port-base`` + index, default ``--port``
  + 1 + index), which it advertises as ``base_url`` in its begin
  responses: the client sends the transaction's follow-ups there, so they
  reach the worker holding the transaction.

The parent only supervises: a worker that dies is started again (its open
transactions are lost, as with any crashed instance); SIGTERM (or Ctrl-C)
is forwarded to every worker, each drains as a single server does, and the
parent exits when all have.  Health and metrics are per worker: the public
port answers for whichever worker the kernel picked; scrape each worker's
private port for its own counters.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable

from .serving import listen_socket

log = logging.getLogger("session_proxy.server")

#: A worker exiting with this code found a configuration error: do not restart it.
CONFIG_ERROR = 2
#: A worker dying sooner than this after its start is restarted with a growing delay.
QUICK_DEATH_SECONDS = 5.0


def worker_sockets(host: str, port: int, private_port: int) -> list[socket.socket]:
    """The public socket (shared by port) and the private one of a worker."""
    return [listen_socket(host, port, reuse_port=True), listen_socket(host, private_port)]


def check_port_free(host: str, port: int) -> None:
    """Raise OSError when something listens on ``host:port`` already.

    The workers bind the public port with ``SO_REUSEPORT``, which would let
    them join an older server still listening there (and share its
    traffic); a plain bind first refuses that.
    """
    if port == 0:
        raise ValueError("--workers needs a fixed --port")
    listen_socket(host, port).close()


def supervise(count: int, start: Callable[[int], int]) -> int:
    """Run ``start(index)`` in ``count`` forked processes until SIGTERM; restart the dead.

    ``start`` serves and returns an exit code; it runs in the child only.
    """
    children: dict[int, int] = {}  # pid -> index
    started: dict[int, float] = {}  # index -> when it was last started
    backoff: dict[int, float] = {}  # index -> wait before the next restart
    stopping = False

    def spawn(index: int) -> None:
        started[index] = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = 1
            try:
                code = start(index)
            except Exception:
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(count):
        spawn(index)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if stopping:
            continue
        if exit_code == CONFIG_ERROR:
            log.error("worker %d failed to start; stopping all workers", index)
            code = CONFIG_ERROR
            forward(signal.SIGTERM, None)
            continue
        # A worker that keeps dying at start (database down) is restarted
        # ever more slowly, up to once every 30 s.
        quick = time.monotonic() - started[index] < QUICK_DEATH_SECONDS
        backoff[index] = min(30.0, backoff.get(index, 0.25) * 2) if quick else 0.5
        log.warning("worker %d (pid %d) exited with %d; starting it again in %g s", index,
                    pid, exit_code, backoff[index])
        time.sleep(backoff[index])
        if not stopping:
            spawn(index)
    return code
