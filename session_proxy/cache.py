"""A worker-side cache for reads that change rarely (variables, connections), with a TTL.

A :class:`ReadCache` keeps the results of declared *read* calls for ``ttl``
seconds, in at most ``maxsize`` entries (least recently used dropped
first).  A read's cache key is its name and its arguments (a ``session``
argument is not part of it).  A *write* declared against a read drops,
when this process calls it, every cached result of that read whose first
argument equals the write's first argument: ``set_variable("k", v)``
forgets ``get_variable("k")``.  Writes by other processes are not seen: a
reader may be served a value up to ``ttl`` seconds older than the
database's (the staleness bound).

The same cache serves both designs:

- the logical client: ``RemoteClient(url, cache=ReadCache(30, reads={
  "get_variable": ["set_variable"], "get_connection": []}))`` answers the
  declared reads from the cache and sends everything else;
- any read function, for example an operation run on a proxy engine's
  session: ``get_variable = cache.cached(ops.get_variable, invalidated_by=
  [ops.set_variable])`` and ``set_variable = cache.invalidating(ops.set_variable)``.

A cached hit makes no request at all.  A read that was under way while this
process invalidated its read is returned but not stored.  Results are
shared, not copied: a caller must not modify a cached object.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .wire.operations import operations

__all__ = ["CacheStats", "ReadCache"]

#: (call name, its first argument, positional arguments, sorted keyword arguments)
Key = tuple[str, Any, tuple, tuple]


@dataclasses.dataclass
class CacheStats:
    """What a :class:`ReadCache` did so far."""

    hits: int = 0
    misses: int = 0
    #: Misses whose entry was there but older than the TTL.
    expired: int = 0
    #: Entries dropped to stay within ``maxsize``.
    evictions: int = 0
    #: Entries dropped by this process's own writes (or :meth:`ReadCache.invalidate`).
    invalidations: int = 0
    #: Calls not cached because an argument is unhashable.
    uncacheable: int = 0
    #: The oldest entry served by a hit, in seconds since it was fetched.
    max_age_served: float = 0.0

    @property
    def hit_rate(self) -> float | None:
        """Hits over cacheable calls, or None before the first one."""
        calls = self.hits + self.misses
        return self.hits / calls if calls else None


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "name", None) or function.__name__


def _first_parameter(function: Callable[..., Any]) -> str | None:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    return next(iter(parameters), None)


#: Stands for "the first argument is not known": such a write drops every entry of its reads.
_UNKNOWN = object()


class ReadCache:
    """Results of declared reads, each kept for ``ttl`` seconds, at most ``maxsize`` of them.

    :param ttl: seconds a result is served from the cache after it was fetched (> 0).
    :param maxsize: the most results kept; the least recently used goes first.
    :param reads: read name -> names of the writes that invalidate it (for
        :meth:`call`; :meth:`cached` and :meth:`invalidating` add to it).
    :param clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, ttl: float, maxsize: int = 1024,
                 reads: Mapping[str, Iterable[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        self.ttl = float(ttl)
        self.maxsize = maxsize
        self.clock = clock
        self.stats = CacheStats()
        self._reads: set[str] = set()
        self._invalidates: dict[str, set[str]] = {}  # write -> reads it invalidates
        self._first_params: dict[str, str | None] = {}  # call name -> first parameter
        self._entries: collections.OrderedDict[Key, tuple[float, Any]] = (
            collections.OrderedDict()
        )
        #: Moves on at every invalidation: a fetch that overlapped one is not stored.
        self._generation = 0
        self._lock = threading.Lock()
        for read, writes in (reads or {}).items():
            self.declare(read, writes)

    def declare(self, read: str, invalidated_by: Iterable[str] = ()) -> None:
        """Cache the results of ``read``; a call to any of ``invalidated_by`` drops them."""
        with self._lock:
            self._reads.add(read)
            for write in invalidated_by:
                self._invalidates.setdefault(write, set()).add(read)

    def is_read(self, name: str) -> bool:
        """Whether calls named ``name`` are cached."""
        return name in self._reads

    def __len__(self) -> int:
        return len(self._entries)

    # -- the one entry point both designs use -----------------------------------------

    def call(self, name: str, args: tuple, kwargs: Mapping[str, Any],
             run: Callable[[], Any]) -> Any:
        """The result of call ``name(*args, **kwargs)``: cached, or ``run()``.

        A declared read is answered from the cache while its entry is
        younger than the TTL, else ``run()`` fetches and stores it.  A
        declared write runs, then drops what it invalidates (also when it
        raises: it may have committed before the error reached us).
        Anything else just runs.
        """
        if name in self._invalidates:
            try:
                return run()
            finally:
                self.invalidate_for(name, args, kwargs)
        if name not in self._reads:
            return run()
        key = self._key(name, args, kwargs)
        if key is None:
            with self._lock:
                self.stats.uncacheable += 1
            return run()
        found, value = self._lookup(key)
        if found:
            return value
        fetched, generation = self.clock(), self._generation  # the value is this old at least
        value = run()
        self._store(key, value, fetched, generation)
        return value

    # -- wrapping functions (the proxy path, or any read) ---------------------------

    def cached(self, read: Callable[..., Any], *, name: str | None = None,
               invalidated_by: Iterable[Callable[..., Any] | str] = ()) -> Callable[..., Any]:
        """``read`` answered from this cache; writes in ``invalidated_by`` drop its entries."""
        read_name = name or _name(read)
        self._first_params[read_name] = _first_parameter(read)
        self.declare(read_name, [w if isinstance(w, str) else _name(w) for w in invalidated_by])

        @functools.wraps(read)
        def cached_read(*args: Any, **kwargs: Any) -> Any:
            return self.call(read_name, args, kwargs, lambda: read(*args, **kwargs))

        cached_read.cache = self  # type: ignore[attr-defined]
        return cached_read

    def invalidating(self, write: Callable[..., Any], *, name: str | None = None
                     ) -> Callable[..., Any]:
        """``write``, dropping after each call what it was declared to invalidate."""
        write_name = name or _name(write)
        self._first_params[write_name] = _first_parameter(write)
        if write_name not in self._invalidates:
            raise ValueError(f"{write_name!r} invalidates no cached read: name it in "
                             "cached(..., invalidated_by=...) or reads= first")

        @functools.wraps(write)
        def invalidating_write(*args: Any, **kwargs: Any) -> Any:
            return self.call(write_name, args, kwargs, lambda: write(*args, **kwargs))

        return invalidating_write

    # -- invalidation ---------------------------------------------------------------

    def invalidate_for(self, write: str, args: tuple, kwargs: Mapping[str, Any]) -> int:
        """Drop the entries write ``write`` called with these arguments invalidates."""
        reads = self._invalidates.get(write, set())
        first = self._first_argument(write, args, kwargs)
        dropped = 0
        with self._lock:
            self._generation += 1
            for key in [k for k in self._entries if k[0] in reads
                        and (first is _UNKNOWN or k[1] is _UNKNOWN or k[1] == first)]:
                del self._entries[key]
                dropped += 1
            self.stats.invalidations += dropped
        return dropped

    def invalidate(self, read: str | None = None) -> int:
        """Drop every entry (of ``read`` only, if given); return how many."""
        with self._lock:
            self._generation += 1
            keys = [k for k in self._entries if read is None or k[0] == read]
            for key in keys:
                del self._entries[key]
            self.stats.invalidations += len(keys)
        return len(keys)

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _without_session(kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in kwargs.items() if k != "session"}

    def _first_argument(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
        """The call's first argument, positional or named; :data:`_UNKNOWN` if unsure."""
        if args:
            return args[0]
        if name not in self._first_params:
            operation = operations().get(name)  # a registered logical operation
            self._first_params[name] = (
                next(iter(operation.signature.parameters), None) if operation else None
            )
        parameter = self._first_params[name]
        return kwargs[parameter] if parameter in kwargs else _UNKNOWN

    def _key(self, name: str, args: tuple, kwargs: Mapping[str, Any]) -> Key | None:
        named = tuple(sorted(self._without_session(kwargs).items()))
        key = (name, self._first_argument(name, args, kwargs), tuple(args), named)
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _lookup(self, key: Key) -> tuple[bool, Any]:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                fetched, value = entry
                age = now - fetched
                if age < self.ttl:
                    self._entries.move_to_end(key)
                    self.stats.hits += 1
                    self.stats.max_age_served = max(self.stats.max_age_served, age)
                    return True, value
                del self._entries[key]
                self.stats.expired += 1
            self.stats.misses += 1
            return False, None

    def _store(self, key: Key, value: Any, fetched: float, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a write may have changed it while it was read: keep nothing
            self._entries[key] = (fetched, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
                self.stats.evictions += 1
