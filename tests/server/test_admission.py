"""Admission arithmetic: requests in the app plus idle transactions fit the threads."""

from __future__ import annotations

import pytest

from session_proxy_server.admission import Admission


def test_admits_while_threads_cover_in_flight_and_idle_transactions() -> None:
    state = {"in_flight": 1, "idle": 0}
    admission = Admission(lambda: state["in_flight"], lambda: state["idle"], threads=4)
    assert admission.enter()
    state.update(in_flight=3, idle=1)  # 3 + 1 == 4 threads: still fits
    assert admission.enter()
    state.update(in_flight=4, idle=1)  # one idle transaction's follow-up would starve
    assert not admission.enter()
    assert (admission.admitted, admission.refused_busy) == (2, 1)


def test_without_a_thread_count_everything_is_admitted() -> None:
    admission = Admission(lambda: 100, lambda: 100)
    assert admission.enter()
    assert admission.refused_busy == 0


def test_thread_count_must_be_positive() -> None:
    admission = Admission(lambda: 0, lambda: 0)
    with pytest.raises(ValueError, match="threads must be positive"):
        admission.limit(0)
