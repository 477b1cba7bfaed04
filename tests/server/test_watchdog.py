"""The watchdog's bookkeeping: its thread is woken only for an earlier deadline,
a deadline armed after later ones still fires, and disarmed watches do not
pile up in its heap."""

from __future__ import annotations

import threading
import time

from session_proxy_server.watchdog import STATEMENT, Watchdog


class CountingCondition(threading.Condition):
    """A condition that counts its notifications."""

    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


def _watchdog() -> tuple[Watchdog, CountingCondition]:
    watchdog = Watchdog()
    condition = watchdog._cond = CountingCondition()
    return watchdog, condition


def test_later_deadlines_do_not_wake_the_thread() -> None:
    watchdog, condition = _watchdog()
    try:
        start = time.monotonic() + 60
        # Disarmed at once, as a fast statement is, maybe before the thread ran.
        watchdog.disarm(watchdog.arm(start, STATEMENT, lambda: None))
        deadline = time.monotonic() + 10
        while watchdog._wakes_at != start and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread starts and goes to sleep until `start`
        assert condition.notified == 1
        for i in range(1, 200):
            watchdog.disarm(watchdog.arm(start + i, STATEMENT, lambda: None))
        # The 199 later deadlines (and the heap compactions) wake nothing.
        assert condition.notified == 1
    finally:
        watchdog.stop()


def test_an_earlier_deadline_armed_last_still_fires() -> None:
    watchdog, condition = _watchdog()
    fired = threading.Event()
    try:
        far = watchdog.arm(time.monotonic() + 3600, STATEMENT, lambda: None)
        near = watchdog.arm(time.monotonic() + 0.05, STATEMENT, fired.set)
        assert condition.notified == 2
        assert fired.wait(5)
        assert near.fired == STATEMENT and far.fired is None
        watchdog.disarm(near)
        watchdog.disarm(far)
    finally:
        watchdog.stop()


def test_disarmed_watches_are_dropped_from_the_heap() -> None:
    watchdog, _ = _watchdog()
    try:
        live = [watchdog.arm(time.monotonic() + 3600, STATEMENT, lambda: None) for _ in range(10)]
        for _ in range(10_000):
            watchdog.disarm(watchdog.arm(time.monotonic() + 60, STATEMENT, lambda: None))
        assert len(watchdog._heap) <= 2 * 64
        assert all(not watch.done for watch in live)
        assert sum(1 for _, _, watch in watchdog._heap if not watch.done) == 10
    finally:
        watchdog.stop()
