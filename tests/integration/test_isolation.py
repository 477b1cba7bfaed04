"""Isolation levels and AUTOCOMMIT, set per connection, direct and proxied."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

LEVELS = {
    "sqlite": ["SERIALIZABLE", "READ UNCOMMITTED"],
    "postgresql": ["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"],
    "mysql": ["SERIALIZABLE", "READ COMMITTED", "REPEATABLE READ"],
}


@pytest.fixture
def table(direct_engine: sa.Engine) -> sa.Table:
    table = sa.Table(
        "sp_iso",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    )
    table.drop(direct_engine, checkfirst=True)
    table.create(direct_engine)
    return table


def test_isolation_level_per_connection(engine: sa.Engine, backend: str) -> None:
    with engine.connect():
        default = engine.dialect.default_isolation_level  # known after first connect
    for level in LEVELS[backend]:
        with engine.connect().execution_options(isolation_level=level) as conn:
            assert conn.get_isolation_level() == level
            conn.execute(sa.text("SELECT 1"))
            conn.commit()
        # Returned to the pool, the connection is back at the default.
        with engine.connect() as conn:
            assert conn.get_isolation_level() == default


def test_autocommit_commits_each_statement(
    engine: sa.Engine, direct_engine: sa.Engine, table: sa.Table
) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(table.insert().values(id=1))
        with direct_engine.connect() as other:
            assert other.execute(sa.select(table.c.id)).scalars().all() == [1]
        conn.rollback()  # nothing left to roll back
    with direct_engine.connect() as other:
        assert other.execute(sa.select(table.c.id)).scalars().all() == [1]


def test_postgresql_read_only_transaction(engine: sa.Engine, backend: str, table) -> None:
    if backend != "postgresql":
        pytest.skip("postgresql_readonly is a PostgreSQL option")
    with engine.connect().execution_options(postgresql_readonly=True) as conn:
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            conn.execute(table.insert().values(id=2))
        conn.rollback()
    with engine.connect() as conn:
        conn.execute(table.insert().values(id=3))
        conn.commit()
