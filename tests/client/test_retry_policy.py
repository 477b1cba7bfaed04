"""The pure parts of retrying on the client: backoff, the policy, the engine URL option.

The server's Idempotency-Key checks are in ``tests/server/test_idempotency_keys.py``;
which statements count as writes in ``tests/server/test_writes.py``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from session_proxy.dialects import register
from session_proxy.retry import NO_RETRIES, RetryPolicy


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


def test_retries_option_in_the_engine_url() -> None:
    register()
    engine = sa.create_engine("sqlite+sessionproxy://127.0.0.1:1/?retries=1")
    engine.dialect.create_connect_args(engine.url)
    assert engine.dialect.transport.retry.attempts == 1
    engine.dispose()


def test_server_busy_refusals_count_against_the_deadline_only() -> None:
    policy = RetryPolicy(attempts=3, deadline=10.0)
    assert policy.allows(2, elapsed=1.0)
    assert not policy.allows(3, elapsed=1.0)
    # Twenty tries of which eighteen were refused server_busy: two count.
    assert policy.allows(20, elapsed=1.0, busy_refusals=18)
    assert not policy.allows(20, elapsed=10.0, busy_refusals=18)
    # Retries off stay off, busy or not.
    assert not RetryPolicy(attempts=1).allows(1, elapsed=0.0, busy_refusals=1)
