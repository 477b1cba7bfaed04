"""The pure parts of retrying: backoff and key checks (writes: tests/test_writes.py)."""

from __future__ import annotations

import pytest

from session_proxy.retry import NO_RETRIES, RetryPolicy
from session_proxy.wire.errors import ProtocolError
from session_proxy_server import requests_validation


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(first_delay=0.1, max_delay=1.0)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        waits = [policy.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempt, waits[:3])
        assert len(set(waits)) > 1  # jittered, so clients do not retry in step


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(first_delay=0.01, max_delay=2.0)
    assert policy.delay(1, retry_after=1.0) == 1.0
    assert policy.delay(1, retry_after=30.0) == 2.0


@pytest.mark.parametrize(
    ("field", "value"), [("attempts", 0), ("first_delay", -1), ("deadline", -0.5)]
)
def test_bad_policy_is_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})


def test_no_retries_tries_once() -> None:
    assert NO_RETRIES.attempts == 1


@pytest.mark.parametrize(
    "key", ["a" * 16, "A-b_c" * 10, "x" * 128]
)
def test_good_idempotency_keys(key: str) -> None:
    assert requests_validation.check_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["short", "x" * 129, "has space in it!!", "semi;colon-key-123"])
def test_bad_idempotency_keys(key: str) -> None:
    with pytest.raises(ProtocolError, match="Idempotency-Key"):
        requests_validation.check_idempotency_key(key)
