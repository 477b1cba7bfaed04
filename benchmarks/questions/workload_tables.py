"""The workload's tables for a question's measurement: seeded fresh, then put back as found.

:func:`fresh_workload` is a context manager: it saves every row of the
workload tables that exist (creating the tables that do not), and on the
way out deletes what the measurement left and writes the saved rows back
(or drops the tables it created).  :func:`reseed` empties the tables and
writes the deterministic data set, so every option of a measurement starts
from the same rows.  Rows are deleted and inserted, never the tables
dropped, so a server holding pooled connections keeps working and sequences
only move forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..workload.models import Base
from ..workload.seed import seed

TABLES = Base.metadata.sorted_tables  # parents first


def _empty(conn: sa.Connection) -> None:
    for table in reversed(TABLES):
        conn.execute(table.delete())


def reseed(engine: sa.Engine, *, dags: int, runs_per_dag: int, tasks_per_dag: int) -> None:
    """Empty the workload tables and write the seed data set."""
    with engine.begin() as conn:
        _empty(conn)
    with Session(engine) as session:
        seed(session, dags=dags, runs_per_dag=runs_per_dag, tasks_per_dag=tasks_per_dag)
        session.commit()


@contextlib.contextmanager
def fresh_workload(engine: sa.Engine) -> Iterator[None]:
    """Save the workload tables' rows; restore them (or drop created tables) afterwards."""
    existing = set(sa.inspect(engine).get_table_names())
    created = [table for table in TABLES if table.name not in existing]
    saved: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        for table in TABLES:
            if table.name in existing:
                saved[table.name] = [dict(row) for row in conn.execute(table.select()).mappings()]
    Base.metadata.create_all(engine, tables=created)
    try:
        yield
    finally:
        with engine.begin() as conn:
            _empty(conn)
            for table in TABLES:
                if saved.get(table.name):
                    conn.execute(table.insert(), saved[table.name])
        Base.metadata.drop_all(engine, tables=created)
