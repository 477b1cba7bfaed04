"""Token verdicts are cached until the token expires, in a bounded LRU.

Real Ed25519 keys and tokens; the verifier's :attr:`verifications` counts
the signature checks it actually made, and the server exports the same
count as ``session_proxy_token_verifications_total``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ed25519

from session_proxy_server.auth import AuthError, TokenVerifier, issue_token
from session_proxy_server.testing import ServerProcess

NOW = 1_700_000_000


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def token(key: ed25519.Ed25519PrivateKey, subject: str = "w", ttl: int = 600) -> str:
    return issue_token(key, subject=subject, role="worker", ttl_seconds=ttl, now=NOW)


def test_a_token_seen_again_is_not_verified_again(key: ed25519.Ed25519PrivateKey) -> None:
    verifier = TokenVerifier(key.public_key())
    first, second = token(key, "a"), token(key, "b")
    claims = [verifier.verify(first, now=NOW + n) for n in range(5)]
    assert {c.subject for c in claims} == {"a"}
    assert verifier.verifications == 1
    assert verifier.verify(second, now=NOW).subject == "b"
    assert verifier.verifications == 2


def test_an_expired_token_is_refused_even_when_cached(key: ed25519.Ed25519PrivateKey) -> None:
    verifier = TokenVerifier(key.public_key(), leeway_seconds=30)
    text = token(key, ttl=60)
    verifier.verify(text, now=NOW + 50)
    assert verifier.verify(text, now=NOW + 89).subject == "w"  # within the leeway
    assert verifier.verifications == 1
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(text, now=NOW + 90)
    assert len(verifier.cache) == 0


def test_the_cache_is_bounded(key: ed25519.Ed25519PrivateKey) -> None:
    verifier = TokenVerifier(key.public_key(), cache_size=3)
    tokens = [token(key, f"s{n}") for n in range(5)]
    for text in tokens:
        verifier.verify(text, now=NOW)
    assert len(verifier.cache) == 3
    verifier.verify(tokens[-1], now=NOW)  # kept: the most recent
    assert verifier.verifications == 5
    verifier.verify(tokens[0], now=NOW)  # evicted: checked again
    assert verifier.verifications == 6


def test_refusals_are_not_cached(key: ed25519.Ed25519PrivateKey) -> None:
    verifier = TokenVerifier(key.public_key())
    other = token(ed25519.Ed25519PrivateKey.generate())
    for _ in range(3):
        with pytest.raises(AuthError, match="signature does not verify"):
            verifier.verify(other, now=NOW)
    assert verifier.verifications == 3
    assert len(verifier.cache) == 0


def test_rotating_the_key_drops_every_verdict(key: ed25519.Ed25519PrivateKey) -> None:
    verifier = TokenVerifier(key.public_key())
    text = token(key)
    verifier.verify(text, now=NOW)
    verifier.public_key = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(AuthError, match="signature does not verify"):
        verifier.verify(text, now=NOW)


def test_the_server_checks_a_token_signature_once(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:///{tmp_path / 'cache.db'}") as server:
        http = requests.Session()
        http.headers.update(server.headers)
        for _ in range(20):
            assert http.get(server.url + "/v1/health", timeout=10).status_code == 200
        # The 20 health checks and this metrics request carried the same token.
        assert server.metric("session_proxy_token_verifications_total") == 1
        http.close()
