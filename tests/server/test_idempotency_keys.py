"""The server's check of the Idempotency-Key header a retrying client sends."""

from __future__ import annotations

import pytest

from session_proxy.wire.errors import ProtocolError
from session_proxy_server import requests_validation


@pytest.mark.parametrize(
    "key", ["a" * 16, "A-b_c" * 10, "x" * 128]
)
def test_good_idempotency_keys(key: str) -> None:
    assert requests_validation.check_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["short", "x" * 129, "has space in it!!", "semi;colon-key-123"])
def test_bad_idempotency_keys(key: str) -> None:
    with pytest.raises(ProtocolError, match="Idempotency-Key"):
        requests_validation.check_idempotency_key(key)
