"""What a benchmark run needs recorded to be reproduced: code, libraries, machine, database.

:func:`environment` returns the results document's flat ``"environment"``
entry: the git commit of the checkout the benchmark ran from and whether
its tracked or new files differed from that commit, the version of every
library on the measured path (``"not installed"`` for an optional one that
is absent), the Python, kernel, CPU model, core count and memory of the
machine, and the database server's version.

:func:`database_tls` asks the database whether it offers TLS and whether
the direct connection used it (PostgreSQL ``SHOW ssl`` and
``pg_stat_ssl``; MariaDB/MySQL ``have_ssl`` and the session's
``Ssl_cipher``); the runner copies the answers into the ``"network"``
entry, leg by leg, with the TLS version and cipher the client negotiated
with the server (:func:`https_session`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

import session_proxy
from session_proxy.connections import ssl_context

#: Distributions on the measured path, client and server, as pip names them.
LIBRARIES = ("sqlalchemy", "psycopg", "psycopg-binary", "psycopg-c", "pymysql", "orjson",
             "werkzeug", "waitress", "cheroot", "cryptography", "requests", "urllib3",
             "certifi")

NOT_INSTALLED = "not installed"


def library_versions() -> dict[str, str]:
    """``{distribution: version}`` for :data:`LIBRARIES`."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def git_state(directory: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether it was dirty (None for both outside a checkout)."""
    where = directory or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _server_version(conn: sa.Connection) -> str:
    """The database server's own version string."""
    name = conn.dialect.name
    if name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    query = "SELECT version()" if name == "postgresql" else "SELECT VERSION()"
    return str(conn.exec_driver_sql(query).scalar())


def environment(direct: sa.Engine) -> dict[str, Any]:
    """Machine, code, library and database versions (one flat mapping)."""
    with direct.connect() as conn:
        version = direct.dialect.server_version_info
        server_version = _server_version(conn)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **git_state(),
        "session_proxy": session_proxy.__version__,
        **library_versions(),
        "backend": direct.dialect.name,
        "driver": direct.dialect.driver,
        "backend_version": ".".join(str(v) for v in version or ()),
        "backend_server": server_version,
    }


def database_tls(direct: sa.Engine) -> dict[str, Any]:
    """Whether the database offers TLS and whether ``direct``'s connection used it.

    ``offered`` and ``used`` are None where the question does not apply
    (SQLite runs in-process).
    """
    name = direct.dialect.name
    with direct.connect() as conn:
        if name == "postgresql":
            offered = conn.exec_driver_sql("SHOW ssl").scalar() == "on"
            used = conn.exec_driver_sql(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar()
            return {"offered": offered, "used": bool(used), "checked_with":
                    "SHOW ssl; pg_stat_ssl of the connection"}
        if name == "mysql":
            have = conn.exec_driver_sql("SHOW VARIABLES LIKE 'have_ssl'").first()
            cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").first()
            return {"offered": bool(have) and have[1] == "YES",
                    "used": bool(cipher) and bool(cipher[1]),
                    "checked_with": "have_ssl; the session's Ssl_cipher"}
    return {"offered": None, "used": None, "checked_with": "not applicable: in-process"}


def https_session(url: str, verify: bool | str) -> dict[str, Any]:
    """The TLS version and cipher a client negotiates with the server at ``url``."""
    parts = urlsplit(url)
    context = ssl_context(verify)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
        cipher = tls.cipher()
        return {"tls_version": tls.version(), "cipher": cipher[0] if cipher else None,
                "verified_with": "system CA bundle" if verify is True else str(verify)}
