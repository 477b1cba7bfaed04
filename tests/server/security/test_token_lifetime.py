"""The server's maximum token lifetime: far-future ``exp`` is refused, on the verifier,
over real HTTP, and ``token issue`` will not mint what servers would refuse."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from session_proxy.wire import protocol
from session_proxy_server.auth import (
    DEFAULT_MAX_TOKEN_LIFETIME,
    AuthError,
    TokenVerifier,
    issue_token,
    load_private_key,
    load_public_key,
)
from session_proxy_server.testing import ServerProcess, signing_key
from tests.conftest import REPO

from .test_tokens import NOW, good_claims, signed

TIMEOUT = 30


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def verifier(key: ed25519.Ed25519PrivateKey, **kwargs: int) -> TokenVerifier:
    return TokenVerifier(key.public_key(), "session-proxy", 30, **kwargs)


def test_the_default_maximum_is_24_hours() -> None:
    assert DEFAULT_MAX_TOKEN_LIFETIME == 86400


@pytest.mark.parametrize(
    "exp",
    [NOW + 86400 + 1, NOW + 10 * 365 * 86400, 10**30, 2**63],
    ids=["a second too long", "ten years", "year 10^30", "2^63"],
)
def test_tokens_living_longer_than_the_maximum_are_refused(
    key: ed25519.Ed25519PrivateKey, exp: int
) -> None:
    token = signed(key, good_claims(exp=exp))
    with pytest.raises(AuthError, match="lifetime too long"):
        verifier(key).verify(token, now=NOW + 60)


def test_a_token_of_exactly_the_maximum_is_accepted(key: ed25519.Ed25519PrivateKey) -> None:
    token = signed(key, good_claims(exp=NOW + 86400))
    assert verifier(key).verify(token, now=NOW + 60).expires_at == NOW + 86400


def test_a_token_without_iat_is_refused(key: ed25519.Ed25519PrivateKey) -> None:
    claims = good_claims()
    del claims["iat"]
    with pytest.raises(AuthError, match="missing claim 'iat'"):
        verifier(key).verify(signed(key, claims), now=NOW + 60)


def test_the_maximum_is_configurable(key: ed25519.Ed25519PrivateKey) -> None:
    hour = signed(key, good_claims(exp=NOW + 3600))
    two_days = signed(key, good_claims(exp=NOW + 2 * 86400))
    with pytest.raises(AuthError, match=r"at most 1800 s"):
        verifier(key, max_lifetime_seconds=1800).verify(hour, now=NOW + 60)
    assert verifier(key, max_lifetime_seconds=3 * 86400).verify(two_days, now=NOW + 60)
    with pytest.raises(ValueError):
        verifier(key, max_lifetime_seconds=0)


# -- over real HTTP -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("lifetime") / "t.db"
    proc = ServerProcess(f"sqlite:///{db}", "--max-token-lifetime", "1h")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("lifetime-default") / "t.db"
    proc = ServerProcess(f"sqlite:///{db}")
    yield proc
    proc.stop()


def health(server: ServerProcess, token: str) -> requests.Response:
    return requests.get(server.url + protocol.HEALTH_PATH, timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {token}"})


def sign(ttl: int) -> str:
    return issue_token(load_private_key(signing_key()[0]), subject="s", role="admin",
                       ttl_seconds=ttl)


def test_the_server_refuses_a_far_future_token(default_server: ServerProcess) -> None:
    far = sign(10**30 - int(time.time()))
    refused = requests.post(
        default_server.url + protocol.PIPELINE_PATH,
        json=protocol.pipeline_request(None, [{"op": "execute", "sql": "SELECT 1"},
                                              {"op": "rollback"}]),
        headers={"Authorization": f"Bearer {far}"},
        timeout=TIMEOUT,
    )
    assert refused.status_code == 401, refused.text
    assert "lifetime too long" in refused.json()["error"]["message"]
    assert "--max-token-lifetime" in refused.json()["error"]["message"]
    assert health(default_server, sign(86400)).status_code == 200
    assert health(default_server, sign(86401)).status_code == 401


def test_the_cli_flag_sets_the_maximum(short_server: ServerProcess) -> None:
    assert health(short_server, sign(1800)).status_code == 200
    assert health(short_server, sign(3600)).status_code == 200
    refused = health(short_server, sign(7200))
    assert refused.status_code == 401
    assert "at most 3600 s (1 h)" in refused.json()["error"]["message"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "session_proxy_server.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_token_issue_refuses_ttls_servers_would_refuse() -> None:
    private, public = signing_key()
    base = ("token", "issue", "--private-key", str(private), "--role", "worker",
            "--subject", "host-1")
    too_long = run_cli(*base, "--ttl", "2d")
    assert too_long.returncode == 2
    assert "longer than the maximum token lifetime" in too_long.stderr
    assert "--max-token-lifetime" in too_long.stderr
    assert too_long.stdout == ""

    allowed = run_cli(*base, "--ttl", "2d", "--max-token-lifetime", "3d")
    assert allowed.returncode == 0, allowed.stderr
    claims = TokenVerifier(load_public_key(public), max_lifetime_seconds=3 * 86400).verify(
        allowed.stdout.strip()
    )
    assert claims.expires_at - claims.issued_at == 2 * 86400

    day = run_cli(*base, "--ttl", "24h")
    assert day.returncode == 0, day.stderr
