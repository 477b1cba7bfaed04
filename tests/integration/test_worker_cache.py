"""The worker-side read cache over real HTTP: a hit sends nothing, in both designs.

The logical client (``RemoteClient(cache=...)``) and a read function run on
a proxy engine's session (``ReadCache.cached``) each answer a repeated read
with zero round trips, see their own write at once, and see another
process's write only once the TTL has passed (a fake clock moves time).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

import session_proxy
from session_proxy.cache import ReadCache
from session_proxy.logical import RemoteClient, operation_mode
from tests import operations_for_tests as ops
from tests.conftest import ServerProcess

OPS_MODULE = "tests.operations_for_tests"
NOTES = ops.Note.__table__
GET, ADD = ops.get_note.name, ops.add_note.name  # registered under their module's name


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ops_server(db_url: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(db_url, "--operations", OPS_MODULE)
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def notes_table(direct_engine: sa.Engine) -> Iterator[None]:
    ops.Base.metadata.drop_all(direct_engine)
    ops.Base.metadata.create_all(direct_engine)
    with direct_engine.begin() as conn:
        conn.execute(NOTES.insert(), [{"id": 1, "text": "one"}, {"id": 2, "text": "two"}])
    yield
    ops.Base.metadata.drop_all(direct_engine)


def _rewrite_elsewhere(direct_engine: sa.Engine, note_id: int, text: str) -> None:
    with direct_engine.begin() as conn:
        conn.execute(NOTES.update().where(NOTES.c.id == note_id).values(text=text))


def test_logical_client_cached_read_makes_no_request(
        ops_server: ServerProcess, direct_engine: sa.Engine) -> None:
    clock = Clock()
    cache = ReadCache(30, reads={GET: [ADD]}, clock=clock)
    client = RemoteClient(ops_server.url, token=ops_server.token, cache=cache)
    try:
        assert client.call(GET, (1,), {}).text == "one"
        sent = client.stats.round_trips
        for _ in range(5):
            assert client.call(GET, (1,), {}).text == "one"
        assert client.stats.round_trips == sent  # five hits, zero requests
        assert cache.stats.hits == 5

        # Another process's write: not seen before the TTL, seen after it.
        _rewrite_elsewhere(direct_engine, 1, "changed")
        clock.now = 29.0
        assert client.call(GET, (1,), {}).text == "one"
        clock.now = 30.0
        assert client.call(GET, (1,), {}).text == "changed"
        assert client.stats.round_trips == sent + 1

        # Its own write: seen at once.
        assert client.call(GET, (3,), {}) is None
        client.call(ADD, (3, "three"), {})
        assert client.call(GET, (3,), {}).text == "three"
        assert cache.stats.invalidations == 1
    finally:
        client.close()


def test_proxy_path_cached_read_makes_no_request(
        ops_server: ServerProcess, direct_engine: sa.Engine) -> None:
    clock = Clock()
    cache = ReadCache(30, clock=clock)
    get_note = cache.cached(ops.get_note, invalidated_by=[ops.add_note])
    add_note = cache.invalidating(ops.add_note)
    engine = session_proxy.create_engine(ops_server.url, token=ops_server.token)
    stats = session_proxy.stats(engine)
    try:
        with operation_mode(session_factory=sessionmaker(bind=engine)):
            assert get_note(2).text == "two"
            sent = stats.round_trips
            assert sent > 0
            for _ in range(5):
                assert get_note(2).text == "two"
            assert stats.round_trips == sent
            _rewrite_elsewhere(direct_engine, 2, "changed")
            clock.now = 31.0
            assert get_note(2).text == "changed"
            assert stats.round_trips > sent
            assert get_note(id=4) is None
            add_note(4, "four")
            assert get_note(4).text == "four"
    finally:
        engine.dispose()
