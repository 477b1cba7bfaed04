"""An Airflow installation for one run: AIRFLOW_HOME, metadata database URL, subprocesses.

Airflow reads its configuration when it is imported, so every Airflow step
runs in its own subprocess (the ``airflow`` CLI, or a Python module) with
``AIRFLOW_HOME`` in a temporary directory and ``sql_alchemy_conn`` set
through the environment, as an operator would set it.  Used by the Airflow
tests (``tests/integration/airflow``) and :mod:`session_proxy_bench.airflow_parse`.

On PostgreSQL two Airflow databases can share one database as two schemas
(``search_path`` in the URL, :func:`fresh_schema`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: The checkout: Airflow's processes import the DAG folder and scenario from its tests.
REPO = Path(__file__).resolve().parents[1]


def schema_url(url: str, schema: str) -> str:
    """``url`` with ``search_path`` set to ``schema`` (PostgreSQL)."""
    return make_url(url).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    ).render_as_string(hide_password=False)


def fresh_schema(url: str, schema: str) -> str:
    """Drop and create ``schema`` in the database of ``url``; return its URL."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    return schema_url(url, schema)


@dataclass
class AirflowSite:
    """One AIRFLOW_HOME and the metadata database URL its processes use."""

    home: Path
    conn: str
    extra_env: dict[str, str] = field(default_factory=dict)
    dags: Path = REPO / "tests" / "integration" / "airflow" / "dags"

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.conn,
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **self.extra_env,
        })
        return env

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``airflow ARGS`` in this site; raises with its output when it fails."""
        return self.run([sys.executable, "-m", "airflow", *args], timeout)

    def python(self, module: str, *args: str, timeout: float = 600
               ) -> subprocess.CompletedProcess[str]:
        """``python -m MODULE ARGS`` in this site."""
        return self.run([sys.executable, "-m", module, *args], timeout)

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, cwd=REPO, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[2:])} failed ({done.returncode}) with "
                f"{self.conn.split('@')[-1]}:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
            )
        return done
