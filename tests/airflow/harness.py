"""Run real Airflow 3 processes against a database, direct or through a server.

Airflow reads its configuration when it is imported, so every Airflow step
runs in its own subprocess (the ``airflow`` CLI, or :mod:`tests.airflow.scenario`)
with ``AIRFLOW_HOME`` in a temporary directory and ``sql_alchemy_conn`` set
through the environment, as an operator would set it.

On PostgreSQL the direct and the proxied Airflow databases are two schemas
of the test database (``search_path`` in the URL), so both start empty and
the tests touch no other database.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from session_proxy_bench.server_process import REPO

DAGS = Path(__file__).resolve().parent / "dags"

#: The Airflow tables the scheduling comparison reads.
COMPARED_TABLES = (
    "dag_bundle", "dag", "dag_tag", "dag_version", "serialized_dag", "dag_code",
    "dag_run", "task_instance", "variable", "connection",
)

#: Columns whose values differ between any two runs (clocks, hosts, random ids).
VOLATILE = frozenset({
    "last_parsed_time", "last_expired", "next_dagrun_create_after", "queued_at",
    "last_updated", "created_at", "updated_at", "start_date", "end_date",
    "run_after", "last_scheduling_decision", "fileloc_hash", "hostname", "pid",
    "last_heartbeat_at", "scheduled_dttm", "queued_dttm", "last_refreshed",
    "last_parse_duration", "span_status", "context_carrier", "dag_hash",
})


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

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.conn,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
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

    def scenario(self, out: Path) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "tests.airflow.scenario", str(out)], 600)

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, cwd=REPO, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[2:])} failed ({done.returncode}) with "
                f"{self.conn.split('@')[-1]}:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
            )
        return done


def _normal(value: Any) -> Any:
    """A value with what differs between runs blanked out."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return "<time>"
    if isinstance(value, uuid.UUID):
        return "<uuid>"
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return value
        return "<uuid>"
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in VOLATILE}
    return value


def dump(url: str, tables: tuple[str, ...] = COMPARED_TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables``, normalised and sorted, read with a direct engine."""
    engine = sa.create_engine(url)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=list(tables))
        result: dict[str, list[dict[str, Any]]] = {}
        with engine.connect() as connection:
            for name in tables:
                table = metadata.tables[name]
                rows = [
                    _normal({k: v for k, v in row._mapping.items() if k not in VOLATILE})
                    for row in connection.execute(sa.select(table))
                ]
                result[name] = sorted(rows, key=repr)
        return result
    finally:
        engine.dispose()


def schema_shape(url: str) -> dict[str, Any]:
    """Tables, their columns (name, type class, nullable) and index names."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        shape: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            if table.startswith("session_proxy"):
                continue
            columns = [
                (c["name"], type(c["type"]).__name__, c["nullable"])
                for c in inspector.get_columns(table)
            ]
            indexes = sorted(str(i["name"]) for i in inspector.get_indexes(table))
            shape[table] = {"columns": columns, "indexes": indexes}
        with engine.connect() as connection:
            shape["alembic_version"] = connection.scalar(
                sa.text("SELECT version_num FROM alembic_version")
            )
        return shape
    finally:
        engine.dispose()
