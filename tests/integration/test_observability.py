"""Metrics in Prometheus text format and one JSON log line per request."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.wire import protocol
from tests.conftest import ServerProcess, wait_for


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("observability") / "o.db"
    server = ServerProcess(f"sqlite:///{db}", "--log-level", "INFO")
    yield server
    server.stop()


def access_lines(server: ServerProcess) -> list[dict]:
    lines = []
    for line in Path(server.log_path).read_text().splitlines():
        start = line.find('{"ts":')
        if start >= 0 and "session_proxy.access" in line:
            lines.append(json.loads(line[start:]))
    return lines


def metric_lines(server: ServerProcess) -> str:
    response = requests.get(server.url + protocol.METRICS_PATH, headers=server.headers,
                            timeout=30)
    assert response.status_code == 200
    return response.text


def test_one_log_line_per_request_with_the_clients_request_id(
    logged_server: ServerProcess,
) -> None:
    engine = session_proxy.create_engine(logged_server.url, token=logged_server.token)
    try:
        with engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError) as failed:
                conn.exec_driver_sql("SELECT * FROM no_such_table")
        # A database error keeps the driver's own message; the id rides along.
        request_id = failed.value.orig.request_id
        assert request_id and re.fullmatch(r"[0-9a-f]{16}", request_id)

        def logged() -> list[dict]:
            return [line for line in access_lines(logged_server)
                    if line.get("request_id") == request_id]

        wait_for(lambda: logged())
        (line,) = logged()
        assert line["status"] == 422 and line["error"] == "database_error"
        assert line["path"] == protocol.PIPELINE_PATH and line["method"] == "POST"
        assert (line["subject"], line["role"]) == ("test-client", "admin")
        assert line["seconds"] >= 0
    finally:
        engine.dispose()

    sent = requests.get(logged_server.url + protocol.METRICS_PATH, timeout=30,
                        headers={protocol.REQUEST_ID_HEADER: "mine-123"})
    assert sent.status_code == 401 and sent.headers[protocol.REQUEST_ID_HEADER] == "mine-123"
    wait_for(lambda: any(line.get("request_id") == "mine-123"
                         for line in access_lines(logged_server)))
    (refused,) = [line for line in access_lines(logged_server)
                  if line.get("request_id") == "mine-123"]
    assert refused["error"] == "unauthorized" and "subject" not in refused

    # A long or odd request id is replaced, not echoed into headers and logs (red team).
    for odd in ("x" * 60_000, "forged\" status=200 x=\"", "a b"):
        sent = requests.get(logged_server.url + protocol.METRICS_PATH, timeout=30,
                            headers={protocol.REQUEST_ID_HEADER: odd})
        replaced = sent.headers[protocol.REQUEST_ID_HEADER]
        assert sent.status_code == 401 and replaced != odd and len(replaced) == 16

    # Errors of the proxy itself quote the request id in their message.
    # (Without a token the handshake already fails: health tells it nothing.)
    with pytest.raises(errors.AuthenticationFailed) as denied:
        anonymous = session_proxy.create_engine(logged_server.url)
        with anonymous.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    orig = denied.value
    assert isinstance(orig, errors.AuthenticationFailed)
    assert f"request {orig.request_id}]" in str(orig)
    wait_for(lambda: any(line.get("request_id") == orig.request_id
                         for line in access_lines(logged_server)))


def test_latency_histogram_counts_every_request(logged_server: ServerProcess) -> None:
    def count(text: str) -> int:
        match = re.search(
            r'^session_proxy_request_seconds_count\{endpoint="pipeline"\} (\d+)$', text, re.M)
        return int(match.group(1)) if match else 0

    before = count(metric_lines(logged_server))
    engine = session_proxy.create_engine(logged_server.url, token=logged_server.token)
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").scalar()
    finally:
        engine.dispose()
    text = metric_lines(logged_server)
    trips = count(text) - before
    assert trips >= 3
    buckets = [int(n) for n in re.findall(
        r'^session_proxy_request_seconds_bucket\{endpoint="pipeline",le="[^"]+"\} (\d+)$',
        text, re.M)]
    assert buckets == sorted(buckets)  # cumulative
    assert buckets[-1] == count(text)  # le="+Inf" counts everything
    assert "# TYPE session_proxy_request_seconds histogram" in text
    assert re.search(r"^session_proxy_open_transactions 0$", text, re.M)
