"""Bad (and a few good) requests sent straight to a real server over HTTP.

Every case talks to a real ``session-proxy-server`` subprocess with plain
``requests``, so what is checked is the wire: the HTTP status, the JSON error
body ``{"error": {"code", "message", ...}}`` and, through a direct engine on
the same database, that a rejected request changed nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from session_proxy.wire import protocol
from tests.conftest import ServerProcess, scratch_table

TABLE = "sp_badreq"
INITIAL_ROWS = [(1, "one")]
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql"}
TIMEOUT = 30


# -- helpers -------------------------------------------------------------------


def bind(backend: str, sql: str, **values: Any) -> tuple[str, Any]:
    """``sql`` written with ``:name`` placeholders, in ``backend``'s driver paramstyle.

    sqlite (pysqlite) takes qmark ``?`` with a list, psycopg pyformat
    ``%(name)s`` with a dict, pymysql format ``%s`` with a list.
    """
    names = re.findall(r":(\w+)", sql)
    if backend == "sqlite":
        return re.sub(r":(\w+)", "?", sql), [values[name] for name in names]
    if backend == "postgresql":
        return re.sub(r":(\w+)", r"%(\1)s", sql), {name: values[name] for name in names}
    if backend == "mysql":
        return re.sub(r":(\w+)", "%s", sql), [values[name] for name in names]
    raise AssertionError(f"unknown backend {backend!r}")


def execute(backend: str, sql: str, **values: Any) -> dict[str, Any]:
    """An ``execute`` step for ``backend``."""
    text, params = bind(backend, sql, **values)
    return {"op": "execute", "sql": text, "params": params}


def insert(backend: str, id_: int, v: str) -> dict[str, Any]:
    """An ``execute`` step inserting one row into the test table."""
    return execute(backend, f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)", id=id_, v=v)


def body_of(*steps: dict[str, Any], txn: str | None = None) -> dict[str, Any]:
    return {"protocol": protocol.PROTOCOL_VERSION, "txn": txn, "steps": list(steps)}


def post(server: ServerProcess, payload: Any, **kwargs: Any) -> requests.Response:
    """POST ``payload`` (JSON-encoded unless already bytes/str) to /v1/pipeline."""
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    headers = {
        "Content-Type": "application/json",
        **server.headers,
        **kwargs.pop("headers", {}),
    }
    return requests.post(
        server.url + protocol.PIPELINE_PATH,
        data=data,
        headers=headers,
        timeout=TIMEOUT,
        **kwargs,
    )


def json_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error response with ``status`` and ``code``; return the error."""
    text = response.text
    assert response.status_code == status, (response.status_code, text)
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert "<html" not in text.lower() and "Traceback" not in text, text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def table_rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(row) for row in conn.execute(sa.text(f"SELECT id, v FROM {TABLE} ORDER BY id"))
        ]


@pytest.fixture
def direct(db_url: str) -> Iterator[sa.Engine]:
    """A direct engine on the database, with the test table holding one row."""
    with scratch_table(db_url, TABLE, "id INTEGER PRIMARY KEY, v VARCHAR(20)",
                       [{"id": 1, "v": "one"}], drop=False) as engine:
        yield engine


@pytest.fixture
def small_body_server(db_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(db_url, "--max-body-bytes", "2000")
    yield proc
    proc.stop()


@pytest.fixture
def paging_server(db_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(db_url, "--page-size", "10")
    yield proc
    proc.stop()


# -- malformed requests -----------------------------------------------------------


def test_invalid_json(server: ServerProcess, direct: sa.Engine) -> None:
    response = post(server, b'{"protocol": 1, "txn": null, "steps": [')
    error = json_error(response, 400, "bad_request")
    assert "not valid JSON" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param([1, 2, 3], "must be a JSON object", id="array"),
        pytest.param("just a string", "must be a JSON object", id="string"),
        pytest.param(None, "must be a JSON object", id="null"),
        pytest.param(
            {"protocol": 1, "txn": None}, "'steps' must be a non-empty list", id="no-steps"
        ),
        pytest.param(
            {"protocol": 1, "txn": None, "steps": []},
            "'steps' must be a non-empty list",
            id="empty-steps",
        ),
        pytest.param(
            {"protocol": 1, "txn": None, "steps": {"op": "commit"}},
            "'steps' must be a non-empty list",
            id="steps-not-list",
        ),
        pytest.param(
            {"protocol": 1, "txn": None, "steps": ["commit"]},
            "step 0 must be a JSON object",
            id="step-not-object",
        ),
    ],
)
def test_malformed_body(
    server: ServerProcess, direct: sa.Engine, payload: Any, expected: str
) -> None:
    response = post(server, json.dumps(payload))
    error = json_error(response, 400, "bad_request")
    assert expected in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_unknown_op(server: ServerProcess, direct: sa.Engine) -> None:
    response = post(server, body_of({"op": "frobnicate"}))
    error = json_error(response, 400, "bad_request")
    assert "unknown 'op' 'frobnicate'" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_unknown_op_after_insert_runs_nothing(
    server: ServerProcess, backend: str, direct: sa.Engine
) -> None:
    response = post(server, body_of(insert(backend, 2, "two"), {"op": "explode"}))
    error = json_error(response, 400, "bad_request")
    assert "step 1: unknown 'op' 'explode'" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"$t": "dec", "v": "not-a-number"}, "malformed 'dec' value", id="bad-decimal"),
        pytest.param({"$t": "nope", "v": 1}, "unknown value tag 'nope'", id="unknown-tag"),
        pytest.param({"$t": "date"}, "malformed 'date' value", id="missing-v"),
    ],
)
def test_malformed_tagged_param(
    server: ServerProcess, backend: str, direct: sa.Engine, value: dict, expected: str
) -> None:
    bad = insert(backend, 3, "three")
    if isinstance(bad["params"], dict):
        bad["params"]["v"] = value
    else:
        bad["params"][1] = value
    response = post(server, body_of(insert(backend, 2, "two"), bad, {"op": "commit"}))
    error = json_error(response, 400, "bad_request")
    assert "step 1: bad parameter value" in error["message"]
    assert expected in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_wrong_protocol_version_in_body(
    server: ServerProcess, backend: str, direct: sa.Engine
) -> None:
    payload = body_of(insert(backend, 2, "two"), {"op": "commit"})
    payload["protocol"] = 99
    response = post(server, payload)
    error = json_error(response, 400, "unsupported_protocol")
    assert "unsupported protocol version 99" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_missing_protocol_version_in_body(
    server: ServerProcess, backend: str, direct: sa.Engine
) -> None:
    response = post(server, {"txn": None, "steps": [insert(backend, 2, "two"), {"op": "commit"}]})
    error = json_error(response, 400, "unsupported_protocol")
    assert "unsupported protocol version None" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_wrong_protocol_header(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(
        server,
        body_of(insert(backend, 2, "two"), {"op": "commit"}),
        headers={protocol.PROTOCOL_HEADER: "2"},
    )
    error = json_error(response, 400, "unsupported_protocol")
    assert "client speaks protocol 2" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_unknown_transaction(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(
        server, body_of(insert(backend, 2, "two"), {"op": "commit"}, txn="no-such-transaction")
    )
    error = json_error(response, 404, "unknown_transaction")
    assert "no-such-" in error["message"] and "is not open on this server" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_commit_not_last(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(
        server,
        body_of(
            insert(backend, 2, "two"),
            {"op": "commit"},
            execute(backend, f"SELECT id FROM {TABLE}"),
        ),
    )
    error = json_error(response, 400, "bad_request")
    assert "'commit' ends the transaction and must be the last step" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_begin_not_first(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(server, body_of(insert(backend, 2, "two"), {"op": "begin"}, {"op": "commit"}))
    error = json_error(response, 400, "bad_request")
    assert "'begin' must be the first step" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_oversized_body(small_body_server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    step = insert(backend, 2, "x" * 10)
    step["sql"] += " " * 10_000  # trailing whitespace: still a valid statement
    payload = json.dumps(body_of(step, {"op": "commit"})).encode()
    assert len(payload) > 10_000
    response = post(small_body_server, payload)
    error = json_error(response, 413, "request_too_large")
    assert "exceeds the server's limit of 2000 bytes" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS
    # The server is still fine afterwards, and a small body passes the limit.
    ok = post(small_body_server, body_of(execute(backend, f"SELECT v FROM {TABLE}")))
    assert ok.status_code == 200, ok.text
    assert ok.json()["results"][0]["rows"] == [["one"]]
    assert ok.json()["txn"] is not None
    done = post(small_body_server, body_of({"op": "rollback"}, txn=ok.json()["txn"]))
    assert done.status_code == 200, done.text


def test_unknown_path(server: ServerProcess, direct: sa.Engine) -> None:
    error = json_error(requests.get(server.url + "/v1/nope", timeout=TIMEOUT), 404, "not_found")
    assert "/v1/nope" in error["message"]
    error = json_error(
        requests.post(server.url + "/", data=b"{}", timeout=TIMEOUT), 404, "not_found"
    )
    assert "POST /" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


def test_wrong_method(server: ServerProcess, direct: sa.Engine) -> None:
    response = requests.get(server.url + protocol.PIPELINE_PATH, timeout=TIMEOUT)
    error = json_error(response, 405, "method_not_allowed")
    assert "GET /v1/pipeline" in error["message"]
    response = requests.post(server.url + protocol.HEALTH_PATH, data=b"{}", timeout=TIMEOUT)
    error = json_error(response, 405, "method_not_allowed")
    assert "POST /v1/health" in error["message"]
    assert table_rows(direct) == INITIAL_ROWS


# -- database errors ------------------------------------------------------------------


def test_database_error_keeps_lease(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(server, body_of({"op": "begin"}, insert(backend, 1, "dup")))
    error = json_error(response, 422, "database_error")
    txn = error.get("txn")
    try:
        assert error["dbapi_class"] == "IntegrityError", error
        assert error["step"] == 1, error
        assert isinstance(error["args"], list), error
        if backend == "postgresql":
            assert error["sqlstate"] == "23505", error
        elif backend == "mysql":
            assert error["errno"] == 1062, error
            assert "Duplicate entry" in error["message"], error
        else:
            assert "UNIQUE constraint failed" in error["message"], error
        assert isinstance(txn, str) and txn, error
    finally:
        if isinstance(txn, str):
            done = post(server, body_of({"op": "rollback"}, txn=txn))
            assert done.status_code == 200, done.text
            assert done.json() == {"txn": None, "results": [{}]}
    assert table_rows(direct) == INITIAL_ROWS
    # The lease is gone now.
    again = post(server, body_of({"op": "rollback"}, txn=txn))
    json_error(again, 404, "unknown_transaction")


def test_database_error_in_later_step_discards_earlier_results(
    server: ServerProcess, backend: str, direct: sa.Engine
) -> None:
    response = post(server, body_of(insert(backend, 2, "two"), insert(backend, 1, "dup")))
    error = json_error(response, 422, "database_error")
    txn = error.get("txn")
    try:
        assert error["step"] == 1, error
        assert error["dbapi_class"] == "IntegrityError", error
        assert isinstance(txn, str), error
    finally:
        if isinstance(txn, str):
            done = post(server, body_of({"op": "rollback"}, txn=txn))
            assert done.status_code == 200, done.text
    assert table_rows(direct) == INITIAL_ROWS


# -- successful requests -----------------------------------------------------------


def test_pipeline_in_one_round_trip(server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    response = post(
        server,
        body_of(
            {"op": "begin"},
            insert(backend, 2, "two"),
            execute(backend, f"SELECT id, v FROM {TABLE} WHERE id = :id", id=2),
            {"op": "commit"},
        ),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["txn"] is None
    results = body["results"]
    assert len(results) == 4
    assert results[1]["rowcount"] == 1
    assert results[2]["rows"] == [[2, "two"]]
    assert [column[0].lower() for column in results[2]["description"]] == ["id", "v"]
    assert "cursor" not in results[2]
    assert table_rows(direct) == [*INITIAL_ROWS, (2, "two")]


def test_paging(paging_server: ServerProcess, backend: str, direct: sa.Engine) -> None:
    expected = [[i, f"row {i}"] for i in range(100, 125)]
    with direct.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"),
            [{"id": i, "v": v} for i, v in expected],
        )
    response = post(
        paging_server,
        body_of(execute(backend, f"SELECT id, v FROM {TABLE} WHERE id >= :lo ORDER BY id", lo=100)),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    txn = body["txn"]
    assert isinstance(txn, str)
    try:
        (first,) = body["results"]
        assert len(first["rows"]) == 10
        cursor = first["cursor"]
        assert isinstance(cursor, str)
        rows = list(first["rows"])
        pages = []
        for _ in range(10):
            page = post(paging_server, body_of({"op": "fetch", "cursor": cursor, "n": 10}, txn=txn))
            assert page.status_code == 200, page.text
            assert page.json()["txn"] == txn
            (result,) = page.json()["results"]
            pages.append(result)
            rows += result["rows"]
            if result["done"]:
                break
        assert [len(page["rows"]) for page in pages] == [10, 5]
        assert [page["done"] for page in pages] == [False, True]
        assert rows == expected
        # The exhausted cursor is closed.
        gone = post(paging_server, body_of({"op": "fetch", "cursor": cursor, "n": 10}, txn=txn))
        error = json_error(gone, 400, "unknown_cursor")
        assert cursor in error["message"]
    finally:
        done = post(paging_server, body_of({"op": "rollback"}, txn=txn))
        assert done.status_code == 200, done.text


def test_fetch_is_capped_at_page_size(
    paging_server: ServerProcess, backend: str, direct: sa.Engine
) -> None:
    with direct.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {TABLE} (id, v) VALUES (:id, :v)"),
            [{"id": i, "v": f"row {i}"} for i in range(100, 125)],
        )
    response = post(
        paging_server,
        body_of(execute(backend, f"SELECT id FROM {TABLE} WHERE id >= :lo ORDER BY id", lo=100)),
    )
    assert response.status_code == 200, response.text
    txn = response.json()["txn"]
    cursor = response.json()["results"][0]["cursor"]
    try:
        page = post(
            paging_server,
            body_of(
                {"op": "fetch", "cursor": cursor, "n": 1000},
                {"op": "close", "cursor": cursor},
                {"op": "rollback"},
                txn=txn,
            ),
        )
        assert page.status_code == 200, page.text
        assert page.json()["txn"] is None
        fetched, closed, rolled_back = page.json()["results"]
        assert fetched["rows"] == [[i] for i in range(110, 120)]
        assert fetched["done"] is False
        assert closed == {} and rolled_back == {}
    finally:
        requests.post(
            paging_server.url + protocol.PIPELINE_PATH,
            json=body_of({"op": "rollback"}, txn=txn),
            headers=paging_server.headers,
            timeout=TIMEOUT,
        )


# -- health and metrics -------------------------------------------------------------


def test_health(server: ServerProcess, backend: str, db_url: str) -> None:
    response = requests.get(
        server.url + protocol.HEALTH_PATH, headers=server.headers, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["protocol"] == 1
    assert body["dialect"] == backend
    assert body["driver"] == DRIVERS[backend]
    info = body["server_version_info"]
    assert isinstance(info, list) and info and all(isinstance(part, int) for part in info[:2])
    assert isinstance(body["page_size"], int) and body["page_size"] > 0
    assert isinstance(body["max_body_bytes"], int) and body["max_body_bytes"] > 0
    # The paramstyle SQLAlchemy's own driver dialect uses (what the client compiles for).
    assert body["paramstyle"] == sa.create_engine(db_url).dialect.paramstyle


def test_health_reports_page_size(paging_server: ServerProcess) -> None:
    body = requests.get(
        paging_server.url + protocol.HEALTH_PATH, headers=paging_server.headers, timeout=TIMEOUT
    ).json()
    assert body["page_size"] == 10


def test_metrics(server: ServerProcess) -> None:
    requests.get(server.url + protocol.HEALTH_PATH, timeout=TIMEOUT)
    response = requests.get(
        server.url + protocol.METRICS_PATH, headers=server.headers, timeout=TIMEOUT
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert "# TYPE session_proxy_requests_total counter" in text
    assert re.search(
        r'^session_proxy_requests_total\{endpoint="health",status="200"\} [1-9]\d*$',
        text,
        re.MULTILINE,
    ), text
    assert re.search(r"^session_proxy_lease_expiries_total \d+$", text, re.MULTILINE), text
    assert re.search(r"^session_proxy_open_transactions \d+$", text, re.MULTILINE), text
