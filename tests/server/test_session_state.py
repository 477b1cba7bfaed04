"""Which statements the server resets after before answering: session locks."""

from __future__ import annotations

import pytest

from session_proxy_server.sql.session_state import may_take_session_lock


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT pg_advisory_lock(1)", "postgresql"),
        ("SELECT pg_try_advisory_lock(1), 2", "postgresql"),
        ("SELECT x FROM t WHERE pg_advisory_lock_shared(7) IS NOT NULL", "postgresql"),
        ("SELECT GET_LOCK('a', 0)", "mysql"),
        ("DO SLEEP(0), GET_LOCK('a', 0)", "mysql"),
    ],
)
def test_lock_functions_are_seen(sql: str, dialect: str) -> None:
    assert may_take_session_lock(sql, dialect)


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1", "SELECT locked FROM t FOR UPDATE", "UPDATE t SET lock = 1", "SELECT 'lock(1)'"],
)
def test_other_statements_are_not(sql: str) -> None:
    assert not may_take_session_lock(sql, "postgresql")
