"""Session pooling requests checked by a real server: bad input gets a 400 naming it.

Raw HTTP against server processes with and without ``--session-pooling``:
a malformed ``POST /v1/sessions`` body or ``session_id``, a session request
to a server that does not allow sessions, and the handshake capability.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from session_proxy.wire import protocol
from session_proxy_server.testing import ServerProcess

SELECT_ONE = [{"op": "begin"}, {"op": "execute", "sql": "SELECT 1", "params": None},
              {"op": "rollback"}]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('sessions') / 'sessions.db'}"
    made = {"on": ServerProcess(url, "--session-pooling"), "off": ServerProcess(url)}
    yield made
    for server in made.values():
        server.stop()


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error["message"]


def test_a_server_without_sessions_refuses_them_by_name(servers) -> None:
    off = servers["off"]
    opened = requests.post(off.url + protocol.SESSIONS_PATH, json=protocol.session_request(),
                           headers=off.headers, timeout=30)
    assert "--session-pooling" in _error(opened, 400, protocol.SESSIONS_DISABLED)
    used = requests.post(off.url + protocol.PIPELINE_PATH,
                         json=protocol.pipeline_request(None, SELECT_ONE, "x" * 20),
                         headers=off.headers, timeout=30)
    _error(used, 400, protocol.SESSIONS_DISABLED)
    health = requests.get(off.url + protocol.HEALTH_PATH, headers=off.headers, timeout=30)
    assert "sessions" not in health.json()["capabilities"]


def test_malformed_session_requests_get_400_naming_the_field(servers) -> None:
    on = servers["on"]
    health = requests.get(on.url + protocol.HEALTH_PATH, headers=on.headers, timeout=30)
    assert "sessions" in health.json()["capabilities"]
    extra = requests.post(on.url + protocol.SESSIONS_PATH,
                          json={"protocol": 1, "pooling": "session"},
                          headers=on.headers, timeout=30)
    assert "'pooling'" in _error(extra, 400, protocol.BAD_REQUEST)
    for bad in (17, "", "s" * 201, ["a"]):
        body = protocol.pipeline_request(None, SELECT_ONE)
        body["session_id"] = bad
        used = requests.post(on.url + protocol.PIPELINE_PATH, json=body,
                             headers=on.headers, timeout=30)
        assert "'session_id'" in _error(used, 400, protocol.BAD_REQUEST)
    unauthenticated = requests.post(on.url + protocol.SESSIONS_PATH,
                                    json=protocol.session_request(), timeout=30)
    assert unauthenticated.status_code == 401
    other_instance = requests.post(
        on.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(None, SELECT_ONE, "0badc0de-12345678-abc"),
        headers=on.headers, timeout=30,
    )
    _error(other_instance, 421, protocol.WRONG_INSTANCE)
