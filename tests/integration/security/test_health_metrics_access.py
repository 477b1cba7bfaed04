"""Health tells anonymous callers only up or draining; metrics are for allowed roles.

Real servers over real HTTP, on every backend for health (the client's
handshake must keep working with a token), on SQLite for the role rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import session_proxy
from session_proxy import errors
from session_proxy.wire import protocol
from session_proxy_server.testing import ServerProcess, issue

TIMEOUT = 30


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_health_reveals_no_versions(server: ServerProcess, backend: str) -> None:
    anonymous = requests.get(server.url + protocol.HEALTH_PATH, timeout=TIMEOUT)
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok", "protocol": protocol.PROTOCOL_VERSION}
    for secret in ("SQLAlchemy", "session-proxy ", backend, "server_version", "driver"):
        assert secret not in anonymous.text

    full = requests.get(server.url + protocol.HEALTH_PATH, headers=server.headers,
                        timeout=TIMEOUT).json()
    assert full["dialect"] == backend
    assert "SQLAlchemy" in full["server_version"]
    assert full["server_version_info"]


def test_the_client_handshake_still_works(server: ServerProcess) -> None:
    engine = session_proxy.create_engine(server.url, token=issue("worker", "handshake"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_client_without_a_token_is_told_to_bring_one(server: ServerProcess) -> None:
    with pytest.raises(errors.AuthenticationFailed, match="requires a token"):
        engine = session_proxy.create_engine(server.url)
        with engine.connect():
            pass


def metrics(server: ServerProcess, token: str | None) -> requests.Response:
    headers = bearer(token) if token else {}
    return requests.get(server.url + protocol.METRICS_PATH, headers=headers, timeout=TIMEOUT)


def test_metrics_need_an_allowed_role(server: ServerProcess) -> None:
    refused = metrics(server, issue("worker", "host-1"))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == protocol.POLICY_VIOLATION
    assert "role 'worker' may not read the metrics" in error["message"]
    assert "session_proxy_" not in refused.text

    served = metrics(server, issue("admin", "operator"))
    assert served.status_code == 200
    assert "session_proxy_open_transactions" in served.text


@pytest.fixture(scope="module")
def role_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    directory = tmp_path_factory.mktemp("metrics-roles")
    policy = Path(directory) / "policy.json"
    policy.write_text(json.dumps({"version": 1, "roles": {
        "worker": {"statements": ["SELECT 1"]},
        "monitor": {"metrics": True},
        "operator": {"allow_all": True},
    }}))
    started = {
        "policy": ServerProcess(f"sqlite:///{directory}/a.db", "--policy", str(policy)),
        "flag": ServerProcess(f"sqlite:///{directory}/b.db", "--metrics-role", "ops",
                              "--metrics-role", "prometheus"),
        "no-auth": ServerProcess(f"sqlite:///{directory}/c.db", auth=False),
    }
    yield started
    for proc in started.values():
        proc.stop()


def test_the_policy_names_roles_that_read_metrics(role_servers: dict) -> None:
    server = role_servers["policy"]
    assert metrics(server, issue("monitor", "m")).status_code == 200
    assert metrics(server, issue("operator", "o")).status_code == 200  # allow_all
    assert metrics(server, issue("admin", "a")).status_code == 200  # --metrics-role default
    assert metrics(server, issue("worker", "w")).status_code == 403
    assert metrics(server, issue("stranger", "s")).status_code == 403
    assert metrics(server, None).status_code == 401
    # The metrics flag grants nothing else.
    response = requests.post(
        server.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(None, [{"op": "execute", "sql": "SELECT 2"},
                                              {"op": "rollback"}]),
        headers=bearer(issue("monitor", "m")),
        timeout=TIMEOUT,
    )
    assert response.status_code == 403


def test_metrics_role_flag_replaces_the_default(role_servers: dict) -> None:
    server = role_servers["flag"]
    assert metrics(server, issue("ops", "o")).status_code == 200
    assert metrics(server, issue("prometheus", "p")).status_code == 200
    assert metrics(server, issue("admin", "a")).status_code == 403


def test_without_authentication_everything_is_open(role_servers: dict) -> None:
    server = role_servers["no-auth"]
    assert metrics(server, None).status_code == 200
    body = requests.get(server.url + protocol.HEALTH_PATH, timeout=TIMEOUT).json()
    assert body["dialect"] == "sqlite"
