"""Malformed pipeline steps get a 400 naming the field, never a 500, and change nothing.

Every backend, a real server over real HTTP.  A property-based test starts
from valid pipelines that would write a row to a canary table and commit,
breaks exactly one thing (a field of the wrong type, an out-of-range value,
an unknown key, a missing field, an option the backend lacks), and checks
that the server answers 4xx JSON naming what was wrong, that the canary
table is unchanged and that no transaction was left open.  A second property
sends well-formed statements with random parameter values: whatever the
driver makes of them, the answer is never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_proxy.wire import messages, protocol
from tests.conftest import ServerProcess, scratch_table

TIMEOUT = 30
CANARY = "sp_step_canary"
#: Isolation levels each backend has (what the server's dialect reports).
LEVELS = {
    "sqlite": {"AUTOCOMMIT", "READ UNCOMMITTED", "SERIALIZABLE"},
    "postgresql": set(protocol.ISOLATION_LEVELS),
    "mysql": set(protocol.ISOLATION_LEVELS),
}
FLAGS = {"sqlite": set(), "postgresql": {"read_only", "deferrable"}, "mysql": set()}
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def canary(db_url: str, server: ServerProcess) -> Iterator[sa.Engine]:
    with scratch_table(db_url, CANARY, "x INTEGER", [{"x": 1}]) as engine:
        yield engine


def canary_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(f"SELECT x FROM {CANARY}"))]


def open_transactions(server: ServerProcess) -> int:
    return int(server.metric("session_proxy_open_transactions"))


def post(server: ServerProcess, body: Any) -> requests.Response:
    return requests.post(
        server.url + protocol.PIPELINE_PATH, json=body, headers=server.headers, timeout=TIMEOUT
    )


def insert_sql(backend: str) -> str:
    marker = "?" if backend == "sqlite" else "%s"
    return f"INSERT INTO {CANARY} (x) VALUES ({marker})"


def valid_pipelines(backend: str) -> list[list[dict]]:
    """Well-formed requests that would each add rows to the canary and commit."""
    sql = insert_sql(backend)
    level = sorted(LEVELS[backend] - {"AUTOCOMMIT"})[0]
    return [
        [
            {"op": "begin", "options": {"isolation_level": level}},
            {"op": "execute", "sql": sql, "params": [2]},
            {"op": "execute_many", "sql": sql, "seq_of_params": [[3], [4]]},
            {"op": "commit"},
        ],
        [
            {"op": "execute", "sql": sql, "params": [5], "expect_rowcount": 1,
             "check_group": 1},
            {"op": "execute_many", "sql": sql, "seq_of_params": [[6]], "expect_rowcount": 1,
             "check_group": 2},
            {"op": "commit"},
        ],
        [
            {"op": "execute", "sql": sql, "params": [7]},
            {"op": "fetch", "cursor": "c1", "n": 10},
            {"op": "close", "cursor": "c1"},
            {"op": "commit"},
        ],
    ]


# -- what "wrong" means for each field --------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def not_int(value: Any) -> bool:
    return type(value) is not int


def wrong_values(field: str, backend: str) -> st.SearchStrategy[Any]:
    """Values ``field`` must not accept (on ``backend``)."""
    if field == "options":
        return json_values.filter(lambda v: not isinstance(v, dict))
    if field == "isolation_level":
        return (json_values | st.sampled_from(sorted(protocol.ISOLATION_LEVELS))).filter(
            lambda v: not (isinstance(v, str) and v in LEVELS[backend])
        )
    if field in ("read_only", "deferrable"):
        wrong = json_values.filter(lambda v: type(v) is not bool)
        return wrong | st.just(True) if field not in FLAGS[backend] else wrong
    if field == "sql":
        return json_values.filter(lambda v: not isinstance(v, str) or v == "")
    if field == "params":
        return json_values.filter(lambda v: v is not None and not isinstance(v, (list, dict)))
    if field == "seq_of_params":
        not_a_set = json_values.filter(lambda v: not isinstance(v, (list, dict)))
        return (
            json_values.filter(lambda v: not isinstance(v, list))
            | st.lists(not_a_set, min_size=1, max_size=3)
            | st.just([[1], {"x": 1}])
        )
    if field == "expect_rowcount":
        return json_values.filter(not_int) | st.integers(max_value=-1)
    if field == "check_group":
        return json_values.filter(not_int)
    if field == "cursor":
        return json_values.filter(lambda v: not isinstance(v, str))
    if field == "n":
        return json_values.filter(not_int) | st.integers(max_value=0)
    raise AssertionError(field)


REQUIRED = {"sql", "seq_of_params", "cursor", "n", "op"}


@st.composite
def malformed(draw: st.DrawFn, backend: str) -> tuple[dict, str]:
    """A request with exactly one thing wrong, and the text its error must name."""
    steps = [dict(step) for step in draw(st.sampled_from(valid_pipelines(backend)))]
    body: dict[str, Any] = {"protocol": 1, "txn": None, "steps": steps}
    kind = draw(st.sampled_from(
        ["wrong value", "unknown key", "missing", "bad op", "option", "envelope"]
    ))
    index = draw(st.integers(0, len(steps) - 1))
    step = steps[index]
    op = step["op"]
    fields = sorted(messages.STEP_FIELDS[op] - {"op"})
    if kind == "option" or (kind == "wrong value" and op == "begin"):
        options = dict(steps[0].get("options", {})) if steps[0]["op"] == "begin" else {}
        if steps[0]["op"] != "begin":
            steps.insert(0, {"op": "begin", "options": options})
        steps[0]["options"] = options
        choice = draw(st.sampled_from(["isolation_level", "read_only", "deferrable", "key"]))
        if choice == "key":
            key = draw(st.text(min_size=1, max_size=10).filter(
                lambda k: k not in protocol.CONNECTION_OPTIONS))
            options[key] = draw(json_values)
            return body, repr(key)
        options[choice] = draw(wrong_values(choice, backend))
        return body, repr(choice)
    if kind == "wrong value" and fields:
        field = draw(st.sampled_from(fields))
        step[field] = draw(wrong_values(field, backend))
        if field == "check_group" and "expect_rowcount" not in step:
            step["expect_rowcount"] = 1
        return body, repr(field)
    if kind == "unknown key":
        key = draw(st.text(min_size=1, max_size=10).filter(
            lambda k: k not in messages.STEP_FIELDS[op]))
        step[key] = draw(json_values)
        return body, repr(key)
    if kind == "missing":
        required = sorted(REQUIRED & set(step))
        field = draw(st.sampled_from(required))
        del step[field]
        return body, repr(field)
    if kind == "bad op":
        step["op"] = draw(
            json_values.filter(lambda v: not (isinstance(v, str) and v in protocol.STEP_OPS))
        )
        return body, "'op'"
    # The envelope: the version, the transaction id, the step list, a stray key.
    part = draw(st.sampled_from(["protocol", "txn", "steps", "key"]))
    if part == "protocol":
        body["protocol"] = draw(json_values.filter(lambda v: v != 1 or type(v) is not int))
    elif part == "txn":
        body["txn"] = draw(json_values.filter(lambda v: v is not None and not isinstance(v, str)))
    elif part == "steps":
        body["steps"] = draw(json_values.filter(lambda v: not isinstance(v, list)) | st.just([]))
    else:
        key = draw(st.text(min_size=1, max_size=10).filter(
            lambda k: k not in protocol.PIPELINE_FIELDS))
        body[key] = draw(json_values)
        return body, repr(key)
    return body, repr(part)


def test_malformed_steps_are_refused_naming_the_field(
    server: ServerProcess, backend: str, canary: sa.Engine
) -> None:
    before = canary_rows(canary)
    seen: list[int] = []

    @SETTINGS
    @given(case=malformed(backend))
    def check(case: tuple[dict, str]) -> None:
        body, named = case
        response = post(server, body)
        seen.append(response.status_code)
        assert 400 <= response.status_code < 500, (body, response.text)
        error = response.json()["error"]
        assert error["code"] in (protocol.BAD_REQUEST, protocol.UNSUPPORTED_PROTOCOL), error
        assert named in error["message"], (body, error)
        assert canary_rows(canary) == before, body

    check()
    assert len(seen) == SETTINGS.max_examples
    assert open_transactions(server) == 0


def test_the_valid_pipelines_do_write(
    server: ServerProcess, backend: str, canary: sa.Engine
) -> None:
    """The oracle works: unbroken, the first pipeline commits its rows."""
    before = canary_rows(canary)
    response = post(server, protocol.pipeline_request(None, valid_pipelines(backend)[0]))
    assert response.status_code == 200, response.text
    assert sorted(canary_rows(canary)) == sorted(before + [(2,), (3,), (4,)])
    with canary.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {CANARY} WHERE x <> 1"))


@pytest.mark.parametrize(
    "options, field",
    [
        ({"isolation_level": []}, "'isolation_level'"),
        ({"isolation_level": "READ COMMITTED; DROP TABLE x"}, "'isolation_level'"),
        ({"read_only": "yes"}, "'read_only'"),
        ({"deferrable": 1}, "'deferrable'"),
        ({"autocommit": True}, "'autocommit'"),
    ],
)
def test_begin_options_are_checked(
    server: ServerProcess, backend: str, canary: sa.Engine, options: dict, field: str
) -> None:
    steps = [{"op": "begin", "options": options},
             {"op": "execute", "sql": insert_sql(backend), "params": [9]}, {"op": "commit"}]
    response = post(server, protocol.pipeline_request(None, steps))
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]
    assert (9,) not in canary_rows(canary)


@pytest.mark.parametrize("option", ["read_only", "deferrable"])
def test_postgresql_only_options_are_refused_elsewhere(
    server: ServerProcess, backend: str, option: str
) -> None:
    steps = [{"op": "begin", "options": {option: True}},
             {"op": "execute", "sql": "SELECT 1"}, {"op": "rollback"}]
    response = post(server, protocol.pipeline_request(None, steps))
    if backend == "postgresql":
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert f"'{option}' is not supported on {backend}" in response.json()["error"]["message"]


def test_isolation_levels_the_backend_lacks_are_refused(
    server: ServerProcess, backend: str
) -> None:
    for level in sorted(protocol.ISOLATION_LEVELS):
        steps = [{"op": "begin", "options": {"isolation_level": level}},
                 {"op": "execute", "sql": "SELECT 1"}, {"op": "rollback"}]
        response = post(server, protocol.pipeline_request(None, steps))
        if level in LEVELS[backend]:
            assert response.status_code == 200, (level, response.text)
        else:
            assert response.status_code == 400, (level, response.text)
            assert f"not supported on {backend}" in response.json()["error"]["message"]
    assert open_transactions(server) == 0


param_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2)
    | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4,
)


def test_no_parameter_value_makes_the_server_fail(server: ServerProcess, backend: str) -> None:
    """A value the driver cannot bind is a 4xx naming 'params', never a 500."""
    marker = "?" if backend == "sqlite" else "%s"
    statuses: list[int] = []

    @SETTINGS
    @given(values=st.lists(param_values, min_size=1, max_size=2), many=st.booleans())
    def check(values: list[Any], many: bool) -> None:
        sql = "SELECT " + ", ".join([marker] * len(values))
        step = ({"op": "execute_many", "sql": sql, "seq_of_params": [values]} if many
                else {"op": "execute", "sql": sql, "params": values})
        response = post(server, protocol.pipeline_request(None, [step, {"op": "rollback"}]))
        statuses.append(response.status_code)
        assert response.status_code < 500, (values, response.text)
        if response.status_code != 200:
            error = response.json()["error"]
            if error["code"] == protocol.BAD_REQUEST:
                assert "params" in error["message"], error
            if error.get("txn"):
                post(server, protocol.pipeline_request(error["txn"], [{"op": "rollback"}]))

    check()
    assert len(statuses) == SETTINGS.max_examples
    assert open_transactions(server) == 0
