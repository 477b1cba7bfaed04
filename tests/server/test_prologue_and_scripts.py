"""Server checks of the begin ``session`` prologue and of ``execute_script`` steps.

Server modules only, no process: the request validator's bounds, the
script splitter (SQLite's own ``complete_statement`` rule) and the guard
view that makes prologue and script statements pass the guards as
``execute`` steps, with refusals reported at the request step's index.
"""

from __future__ import annotations

import pytest

from session_proxy.wire import protocol
from session_proxy.wire.errors import ProtocolError
from session_proxy_server.expanded_steps import checked, guard_view
from session_proxy_server.requests_validation import parse_pipeline_request
from session_proxy_server.sql import session_guard, text_guard
from session_proxy_server.sql.scripts import split_script


def _request(*steps: dict) -> dict:
    return {"protocol": protocol.PROTOCOL_VERSION, "txn": None, "steps": list(steps)}


def _begin(session: object) -> dict:
    return {"op": "begin", "options": {}, "session": session}


SELECT = {"op": "execute", "sql": "SELECT 1", "params": None}


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ("SET x = 1", "'session' must be a list"),
        ([""], r"'session'\[0\] must be a non-empty string"),
        ([1], r"'session'\[0\] must be a non-empty string"),
        (["SET a.b = 1"] * (protocol.MAX_SESSION_STATEMENTS + 1), "'session' has 33"),
        (["SET a.b = '" + "x" * protocol.MAX_SESSION_BYTES + "'"], "bytes, over the limit"),
    ],
)
def test_bad_prologues_are_refused_naming_the_problem(session: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as refused:
        parse_pipeline_request(_request(_begin(session), SELECT))
    assert protocol.ERROR_STATUS[refused.value.code] == 400


def test_a_bounded_prologue_is_accepted() -> None:
    session = ["SET a.b = 1"] * protocol.MAX_SESSION_STATEMENTS
    _txn, steps = parse_pipeline_request(_request(_begin(session), SELECT))
    assert steps[0]["session"] == session


def test_scripts_split_where_sqlite_would() -> None:
    script = """
        CREATE TABLE t (x TEXT DEFAULT 'a;b');  -- one; comment
        /* ; */ ;;
        CREATE TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET x = x || ';'; END;
        INSERT INTO "t;q" VALUES (1)
    """
    assert split_script(script) == [
        "CREATE TABLE t (x TEXT DEFAULT 'a;b');",
        "CREATE TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET x = x || ';'; END;",
        'INSERT INTO "t;q" VALUES (1)',
    ]
    assert split_script("-- nothing;\n/* at all */") == []


def test_guard_view_reports_refusals_at_the_request_step() -> None:
    steps = [
        _begin(["PRAGMA foreign_keys=ON", "ATTACH DATABASE 'x' AS x"]),
        SELECT,
        {"op": "execute_script", "sql": "SELECT 1; DETACH DATABASE y;"},
    ]
    view, origin = guard_view(steps, "sqlite")
    assert [step["sql"] for step in view[1:]] == [
        "PRAGMA foreign_keys=ON", "ATTACH DATABASE 'x' AS x", "SELECT 1",
        "SELECT 1;", "DETACH DATABASE y;",
    ]
    assert origin == [0, 0, 0, 1, 2, 2]
    with pytest.raises(session_guard.IsolationViolation) as refused:
        checked(view, origin, session_guard.check_steps, "sqlite")
    assert refused.value.step == 0
    with pytest.raises(session_guard.IsolationViolation) as refused:
        checked(view[3:], origin[3:], session_guard.check_steps, "sqlite")
    assert refused.value.step == 2


def test_guard_view_leaves_plain_requests_alone_and_scripts_to_sqlite() -> None:
    steps = [{"op": "begin", "options": {}}, SELECT]
    assert guard_view(steps, "postgresql") == (steps, None)
    with pytest.raises(ProtocolError, match="for SQLite only"):
        guard_view([{"op": "execute_script", "sql": "SELECT 1"}], "postgresql")
    view, origin = guard_view([_begin(["SET x\x00 = 1"])], "postgresql")
    with pytest.raises(text_guard.UnsafeStatement) as refused:
        checked(view, origin, text_guard.check_steps, "postgresql", "psycopg")
    assert refused.value.step == 0
