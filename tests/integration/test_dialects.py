"""Each proxy dialect compiles exactly as the server's real driver dialect."""

from __future__ import annotations

import sqlalchemy as sa

FLAGS = (
    "name",
    "paramstyle",
    "positional",
    "server_version_info",
    "default_isolation_level",
    "default_schema_name",
    "insert_returning",
    "update_returning",
    "delete_returning",
    "insert_executemany_returning",
    "use_insertmanyvalues",
    "insertmanyvalues_page_size",
    "insertmanyvalues_max_parameters",
    "supports_multivalues_insert",
    "supports_sane_rowcount",
    "supports_sane_multi_rowcount",
    "supports_native_decimal",
    "supports_native_boolean",
    "supports_statement_cache",
    "max_identifier_length",
    "is_mariadb",
    "_sqlite_version_info",
)


def _flags(dialect: sa.Dialect) -> dict:
    return {flag: getattr(dialect, flag, None) for flag in FLAGS}


def test_proxy_dialect_flags_match_direct(direct_engine, proxy_engine) -> None:
    with direct_engine.connect(), proxy_engine.connect():
        pass  # both dialects initialized from a real first connect
    assert proxy_engine.dialect.driver == "sessionproxy"
    assert _flags(proxy_engine.dialect) == _flags(direct_engine.dialect)


def test_same_sql_for_the_same_statement(direct_engine, proxy_engine) -> None:
    table = sa.table("t", sa.column("a"), sa.column("b"))
    statement = (
        sa.insert(table).values(a=sa.bindparam("a"), b=5).returning(table.c.a)
        if direct_engine.dialect.insert_returning
        else sa.insert(table).values(a=sa.bindparam("a"), b=5)
    )
    with direct_engine.connect(), proxy_engine.connect():
        pass
    direct_sql = str(statement.compile(dialect=direct_engine.dialect))
    proxy_sql = str(statement.compile(dialect=proxy_engine.dialect))
    assert proxy_sql == direct_sql
