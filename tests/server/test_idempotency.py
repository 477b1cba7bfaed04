"""server/idempotency.py on a real outcome table: lookup order, conflicts, recording.

The end-to-end behaviour over HTTP (retries of statements and of logical
calls) is in test_honest_outcomes.py, test_outcomes.py and
test_logical_api.py; this checks the module both hosts share.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from session_proxy_server.idempotency import Idempotency, Replay, Request, StaleRequest, request_of
from session_proxy_server.outcomes import OutcomeStore


class Conflict(Exception):
    """The host's 409, as the test host makes it."""


@pytest.fixture
def store(db_url: str) -> Iterator[OutcomeStore]:
    engine = sa.create_engine(db_url)
    store = OutcomeStore(engine, window_seconds=60)
    yield store
    store.stop()
    engine.dispose()


def _request(role: str = "r", digest: str = "d" * 64) -> Request:
    return Request("subject", role, secrets.token_hex(10), digest)


def _commit_record(store: OutcomeStore, idem: Idempotency, request: Request, body: bytes) -> None:
    raw = store.engine.raw_connection()
    try:
        idem.record_on(raw.dbapi_connection, request, request.outcome(200, body))
        raw.commit()
    finally:
        raw.close()


def test_request_of_needs_a_key() -> None:
    assert request_of(("s", "r"), None, "d") is None
    assert request_of(("s", "r"), "k", "d") == Request("s", "r", "k", "d")


def test_a_recorded_outcome_is_replayed_from_the_table_on_a_retry(store: OutcomeStore) -> None:
    idem = Idempotency(store, Conflict)
    request = _request()
    idem.check(request)  # nothing recorded: no exception
    _commit_record(store, idem, request, b'{"n": 1}')
    # Not in this instance's memory: only a retry looks in the table.
    idem.check(request, database=False)
    with pytest.raises(Replay) as replay:
        idem.check(request, database=True)
    assert replay.value.outcome.body == b'{"n": 1}'
    before = store.replays
    assert idem.replayed(replay.value.outcome) is replay.value.outcome
    assert store.replays == before + 1


def test_memory_answers_without_the_table(store: OutcomeStore) -> None:
    idem = Idempotency(store, Conflict)
    request = _request()
    idem.remember(request, request.outcome(201, b"{}"))
    with pytest.raises(Replay) as replay:
        idem.check(request, database=False)
    assert replay.value.outcome.status == 201
    assert not idem.recorded(_request())


@pytest.mark.parametrize("other", [{"role": "admin"}, {"digest": "e" * 64}])
def test_a_key_of_another_role_or_request_is_a_conflict(
    store: OutcomeStore, other: dict[str, str]
) -> None:
    idem = Idempotency(store, Conflict)
    request = _request()
    _commit_record(store, idem, request, b"{}")
    fields = {"role": request.role, "digest": request.digest, **other}
    impostor = Request(request.subject, fields["role"], request.key, fields["digest"])
    with pytest.raises(Conflict, match=request.key):
        idem.check(impostor)
    assert idem.recorded(impostor)  # the record stays, unchanged
    with pytest.raises(Replay):
        idem.check(request)


def test_a_second_record_of_a_key_fails_in_the_database(store: OutcomeStore) -> None:
    idem = Idempotency(store, Conflict)
    request = _request()
    _commit_record(store, idem, request, b"{}")
    with pytest.raises(store.engine.dialect.loaded_dbapi.IntegrityError):
        _commit_record(store, idem, request, b'"again"')
    with pytest.raises(Replay) as replay:
        idem.check(request)
    assert replay.value.outcome.body == b"{}"


def _lease(ended: bool = False) -> SimpleNamespace:
    return SimpleNamespace(keys={}, last_key=None, last_outcome=None, ended=ended)


def test_the_lease_answers_its_last_request_and_refuses_older_ones(store: OutcomeStore) -> None:
    idem = Idempotency(store, Conflict)
    lease = _lease()
    first, second = _request(), _request()
    idem.check_lease(lease, first)  # never ran here
    idem.keep(lease, first, 200, b'"first"')
    with pytest.raises(Replay) as replay:
        idem.check_lease(lease, first)
    assert replay.value.outcome.body == b'"first"'
    idem.keep(lease, second, 200, b'"second"')
    with pytest.raises(StaleRequest):
        idem.check_lease(lease, first)
    with pytest.raises(Conflict):
        idem.check_lease(lease, Request(first.subject, first.role, first.key, "f" * 64))
    # An ended lease's answer goes to memory, not to the lease.
    ended = _lease(ended=True)
    third = _request()
    idem.keep(ended, third, 200, b'"third"')
    assert ended.keys == {}
    with pytest.raises(Replay):
        idem.check(third, database=False)


def test_without_an_outcome_table_nothing_is_looked_up_or_recorded() -> None:
    idem = Idempotency(None, Conflict)
    request = _request()
    assert not idem.records
    idem.remember(request, request.outcome(200, b"{}"))
    idem.check(request)
    assert not idem.recorded(request)
    idem.failed(request, "operation_error", "boom")
    idem.ensure_table()
