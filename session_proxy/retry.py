"""When and how often the client sends a request again.

Every pipeline request and logical call carries an idempotency key, and the
server runs one key at most once (it answers a repeat from its record), so
re-sending one is always safe: it is never a second execution, inside a
transaction or out.  What :class:`RetryPolicy` decides is only *whether it
is worth it*:

- the connection failed, dropped or timed out before a response came (the
  request may or may not have run; the key settles which);
- the server answered that nothing ran and asked to come back:
  503 ``too_many_transactions``, ``server_busy`` or ``shutting_down`` (honouring
  ``Retry-After``), 409 ``transaction_busy`` (the first attempt is still
  running), 421 ``wrong_instance`` (a load balancer sent a follow-up to an
  instance that does not hold the transaction);
- a gateway in front of the server answered 502, 503 or 504 without a
  session-proxy body.

Waits grow exponentially with full jitter, up to ``max_delay``, until
``attempts`` tries or ``deadline`` seconds have been spent.  Refusals with
503 ``server_busy`` (the server keeps its threads for open transactions'
next requests, see the server's admission control) do not count against
``attempts``, only against ``deadline``: the server answers them at once,
and under sustained load they come in runs that a few attempts would not
outlast.  With retries off (``attempts=1``) nothing is sent again.
"""

from __future__ import annotations

import dataclasses
import random

from .wire import protocol

#: Error codes after which a request is worth sending again.
RETRY_CODES = protocol.RETRYABLE_ERRORS | {protocol.WRONG_INSTANCE}

#: Gateway statuses (nginx and friends) that say the upstream did not answer.
GATEWAY_STATUSES = frozenset({502, 503, 504})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how far apart, to retry one request.

    :param attempts: tries in all, the first included (1 disables retries).
    :param first_delay: the wait before the first retry, in seconds.
    :param max_delay: the longest single wait.
    :param deadline: stop retrying once this many seconds have passed.
    """

    attempts: int = 8
    first_delay: float = 0.05
    max_delay: float = 2.0
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        for name in ("first_delay", "max_delay", "deadline"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {getattr(self, name)}")

    def allows(self, attempt: int, elapsed: float, busy_refusals: int = 0) -> bool:
        """Whether retry number ``attempt`` may go out ``elapsed`` seconds after the first try.

        ``busy_refusals`` of the tries so far were refused with
        ``server_busy``; they count against :attr:`deadline` only.
        """
        if self.attempts <= 1 or elapsed >= self.deadline:
            return False
        return attempt - busy_refusals < self.attempts

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


#: No retries at all.
NO_RETRIES = RetryPolicy(attempts=1)
