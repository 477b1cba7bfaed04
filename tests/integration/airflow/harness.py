"""Compare two Airflow databases: their schemas and the rows Airflow wrote.

The Airflow processes themselves run through
:class:`session_proxy_bench.airflow_site.AirflowSite`.  On PostgreSQL the
direct and the proxied Airflow databases are two schemas of the test
database, so both start empty and the tests touch no other database.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import sqlalchemy as sa

from session_proxy_bench.airflow_site import AirflowSite, fresh_schema, schema_url

__all__ = ["AirflowSite", "dump", "fresh_schema", "schema_shape", "schema_url"]

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
