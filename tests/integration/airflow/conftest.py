"""Fixtures for the Airflow tests: an Airflow database direct and one through a server.

The tests skip when Airflow is not installed (the main venv); ``tox -e
airflow`` and ``.ci/run`` run them in a venv with apache-airflow-core.
Airflow itself is never imported into the pytest process: it configures its
ORM at import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from session_proxy_server.testing import ServerProcess
from tests.conftest import BACKEND_URLS, backend_url

from .harness import AirflowSite, fresh_schema

#: Why the Airflow tests skip, when they do.
MISSING = (
    "apache-airflow-core is not installed here (tox -e airflow, or .ci/run's .venv-airflow)"
    if importlib.util.find_spec("airflow") is None else None
)

AIRFLOW_BACKENDS = ["sqlite", "postgresql"]


@dataclass
class AirflowPair:
    """The same Airflow setup twice: straight to the database, and through a server."""

    backend: str
    direct: AirflowSite
    proxied: AirflowSite
    direct_db: str  # URLs of the two databases, for reading them directly
    proxied_db: str
    server: ServerProcess


def proxy_url(server: ServerProcess, token: str | None = None) -> str:
    return f"sessionproxy://:{token or server.token}@127.0.0.1:{server.port}/"


def databases(backend: str, tmp: Path) -> tuple[str, str]:
    """(direct, proxied) database URLs, both empty."""
    if backend == "sqlite":
        # Airflow's connect hook asks for WAL; a server lets a database that
        # is not in WAL already keep its journal mode (docs/reliability.md).
        for name in ("direct.db", "proxied.db"):
            with contextlib.closing(sqlite3.connect(tmp / name)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        return f"sqlite:///{tmp / 'direct.db'}", f"sqlite:///{tmp / 'proxied.db'}"
    base = backend_url(backend, tmp / "unused.db")
    assert base == BACKEND_URLS[backend]
    return fresh_schema(base, "af_direct"), fresh_schema(base, "af_proxied")


@pytest.fixture(scope="module", params=AIRFLOW_BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[AirflowPair]:
    """Both databases migrated: ``airflow db migrate`` direct, and through the server."""
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"airflow-{backend}")
    direct_db, proxied_db = databases(backend, tmp)
    with ServerProcess(proxied_db, "--lease-seconds", "120") as server:
        pair = AirflowPair(
            backend,
            AirflowSite(tmp / "home-direct", direct_db),
            AirflowSite(tmp / "home-proxied", proxy_url(server)),
            direct_db, proxied_db, server,
        )
        pair.direct.airflow("db", "migrate")
        pair.proxied.airflow("db", "migrate")
        yield pair
