"""The worker-side read cache on its own: TTL, bound, invalidation, keys (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from session_proxy.cache import ReadCache


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A key-value 'database' counting the reads that reach it."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"a": "1", "b": "2"}
        self.reads = 0

    def get_value(self, key: str, *, session: Any = None) -> str | None:
        self.reads += 1
        return self.values.get(key)

    def set_value(self, key: str, value: str) -> None:
        self.values[key] = value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> Store:
    return Store()


def test_a_hit_within_the_ttl_does_not_call_the_read(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value")
    assert [get("a"), get("a"), get("a")] == ["1", "1", "1"]
    assert store.reads == 1
    assert (cache.stats.hits, cache.stats.misses) == (2, 1)
    assert cache.stats.hit_rate == pytest.approx(2 / 3)


def test_an_entry_expires_after_the_ttl(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value")
    get("a")
    store.values["a"] = "changed elsewhere"
    clock.now = 9.9
    assert get("a") == "1"  # stale, within the TTL: the staleness bound
    assert cache.stats.max_age_served == pytest.approx(9.9)
    clock.now = 10.0
    assert get("a") == "changed elsewhere"
    assert store.reads == 2
    assert cache.stats.expired == 1


def test_the_least_recently_used_entry_goes_past_maxsize(clock: Clock, store: Store) -> None:
    store.values.update(c="3")
    cache = ReadCache(10, maxsize=2, clock=clock)
    get = cache.cached(store.get_value, name="get_value")
    get("a"), get("b"), get("a"), get("c")  # b is the least recently used
    assert len(cache) == 2 and cache.stats.evictions == 1
    reads = store.reads
    get("a"), get("c")
    assert store.reads == reads
    get("b")
    assert store.reads == reads + 1


def test_own_write_drops_the_entries_of_its_key_only(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value", invalidated_by=["set_value"])
    put = cache.invalidating(store.set_value, name="set_value")
    get("a"), get("b")
    put("a", "new")
    assert cache.stats.invalidations == 1
    assert get("a") == "new"
    assert get("b") == "2"
    assert store.reads == 3  # a twice, b once


def test_a_write_by_keyword_matches_a_positional_read(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value", invalidated_by=["set_value"])
    put = cache.invalidating(store.set_value, name="set_value")
    get("a"), get(key="b")
    put(key="b", value="new")
    put(value="x", key="a")
    assert cache.stats.invalidations == 2 and len(cache) == 0


def test_a_failed_write_still_invalidates(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, reads={"get": ["put"]}, clock=clock)
    cache.call("get", ("a",), {}, lambda: "1")

    def fail() -> None:
        raise RuntimeError("committed, then the answer was lost")

    with pytest.raises(RuntimeError):
        cache.call("put", ("a", "v"), {}, fail)
    assert len(cache) == 0


def test_session_is_not_part_of_the_key(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value")
    get("a", session=object()), get("a", session=object())
    assert store.reads == 1


def test_unhashable_arguments_are_read_every_time(clock: Clock) -> None:
    cache = ReadCache(10, reads={"get": []}, clock=clock)
    calls = []
    for _ in range(2):
        cache.call("get", (["a"],), {}, lambda: calls.append(1))
    assert len(calls) == 2 and cache.stats.uncacheable == 2 and len(cache) == 0


def test_undeclared_calls_pass_through(clock: Clock) -> None:
    cache = ReadCache(10, reads={"get": []}, clock=clock)
    results = [cache.call("other", ("a",), {}, lambda: object()) for _ in range(2)]
    assert results[0] is not results[1] and len(cache) == 0


def test_invalidate_by_hand(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, clock=clock)
    get = cache.cached(store.get_value, name="get_value")
    get("a"), get("b")
    assert cache.invalidate("get_value") == 2
    get("a")
    assert store.reads == 3


@pytest.mark.parametrize("ttl, maxsize", [(0, 10), (-1, 10), (1, 0)])
def test_bad_settings_are_refused(ttl: float, maxsize: int) -> None:
    with pytest.raises(ValueError):
        ReadCache(ttl, maxsize=maxsize)


def test_a_write_that_invalidates_nothing_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="invalidates no cached read"):
        ReadCache(10).invalidating(store.set_value)


def test_a_read_overlapping_own_write_is_not_stored(clock: Clock, store: Store) -> None:
    cache = ReadCache(10, reads={"get_value": ["set_value"]}, clock=clock)

    def read_while_written() -> str | None:
        value = store.get_value("a")  # the old value, read first ...
        cache.call("set_value", ("a", "new"), {}, lambda: store.set_value("a", "new"))
        return value  # ... arrives after the write

    assert cache.call("get_value", ("a",), {}, read_while_written) == "1"
    assert len(cache) == 0
    assert cache.call("get_value", ("a",), {}, lambda: store.get_value("a")) == "new"
