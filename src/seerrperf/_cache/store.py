"""The bounded storage behind a cache: entries with a fresh and a keep deadline, LRU eviction.

A :class:`Store` is a ``cachetools.TLRUCache`` of :class:`Entry` objects. An
entry is fresh until ``fresh_until`` and kept until ``keep_until`` (later by
the longest stale window requested from the cache), so a stale entry stays
readable during the stale windows; cachetools drops it at ``keep_until`` and
evicts the least recently used entry when ``maxsize`` is reached.

Not thread-safe: the cache's lock guards every call.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from cachetools import Cache, TLRUCache

from seerrperf._errors import ConfigurationError
from seerrperf._runtime import Clock

__all__ = ["Entry", "Store", "approx_size"]


class Entry:
    """One cached value, its two deadlines (clock seconds) and its refresh backoff.

    ``failures`` counts the failed stale-while-revalidate refreshes of this
    entry in a row, and no refresh starts before ``retry_at``; a successful
    load replaces the entry, and so resets both.
    """

    __slots__ = ("failures", "fresh_until", "keep_until", "retry_at", "value")

    def __init__(self, value: Any, fresh_until: float, keep_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.keep_until = keep_until
        self.failures = 0
        self.retry_at = -math.inf


def _keep_until(_key: Hashable, entry: Entry, _now: float) -> float:
    return entry.keep_until


if TYPE_CHECKING:
    _StoreBase = TLRUCache[Hashable, Entry]
else:
    _StoreBase = TLRUCache


class Store(_StoreBase):
    """A TLRUCache that counts LRU evictions and can be read without reordering.

    Args:
        maxsize: Most entries held.
        clock: Seconds, like ``time.monotonic``.

    Attributes:
        evictions: Entries removed to make room (not expiry, not clearing).
        stale_window: Seconds an entry is kept after it expires: the longest
            stale window requested so far.
    """

    def __init__(self, maxsize: int, clock: Clock) -> None:
        super().__init__(maxsize, _keep_until, clock)
        self._clock = clock
        self.evictions = 0
        self.stale_window = 0.0

    def popitem(self) -> tuple[Hashable, Entry]:
        # cachetools calls popitem only to make room (expired entries go first).
        item = super().popitem()
        self.evictions += 1
        return item

    def clear(self) -> None:
        # cachetools < 6 clears by popping every item: those are not evictions.
        evictions = self.evictions
        super().clear()
        self.evictions = evictions

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        """Store ``value`` fresh for ``ttl`` seconds; ``ttl == 0`` drops any entry instead."""
        if ttl == 0:
            self.discard(key)
            return
        fresh_until = self.now() + ttl
        self[key] = Entry(value, fresh_until, fresh_until + self.stale_window)

    def now(self) -> float:
        """Read the clock, refusing a reading that is not a finite number of seconds.

        Raises:
            ConfigurationError: The clock returned NaN, an infinity or a
                non-number: every freshness test would then be false, and the
                cache would silently never hit.
        """
        now = self._clock()
        if type(now) is not float:
            if isinstance(now, bool) or not isinstance(now, int | float):
                raise ConfigurationError(
                    f"clock must return a number of seconds, got {type(now).__name__}"
                )
            try:
                now = float(now)
            except OverflowError:
                now = math.inf
        if not math.isfinite(now):
            raise ConfigurationError(f"clock must return a finite number of seconds, got {now!r}")
        return now

    def keep_stale_for(self, seconds: float) -> None:
        """Keep entries stored from now on at least ``seconds`` past their expiry."""
        self.stale_window = max(self.stale_window, seconds)

    def peek(self, key: Hashable) -> Entry | None:
        """Return the live entry for ``key`` (fresh or stale) without touching the LRU order."""
        return Cache.__getitem__(self, key) if key in self else None

    def snapshot(self) -> list[tuple[Hashable, Entry]]:
        """Return the live entries without touching the LRU order."""
        self.expire()
        return [(key, Cache.__getitem__(self, key)) for key in Cache.__iter__(self)]

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` if it is held."""
        try:
            del self[key]
        except KeyError:  # absent, or expired (cachetools removes it and raises)
            pass

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """Remove every entry whose key satisfies ``predicate``."""
        for key in [key for key, _ in self.snapshot() if predicate(key)]:
            self.discard(key)


def approx_size(obj: object) -> int:
    """``sys.getsizeof`` summed over ``obj`` and the builtin containers inside it."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return total
