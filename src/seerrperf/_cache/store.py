"""The bounded storage behind a cache: entries with a fresh and a keep deadline, LRU eviction.

A :class:`Store` keeps :class:`Entry` objects in an ``OrderedDict`` in least
recently used order. An entry is fresh until ``fresh_until`` and kept until
``keep_until`` (later by the longest stale window requested from the cache),
so a stale entry stays readable during the stale windows. When ``maxsize`` is
reached, entries past ``keep_until`` go first, then the least recently used.

Written for the hit path: a lookup is one ``dict.get`` (:attr:`Store.find`), a
clock read and one ``move_to_end`` (:attr:`Store.touch`), all C calls, with
no per-lookup bookkeeping -- cachetools' ``TLRUCache`` costs four Python
calls per lookup. Expiry is found through a heap of keep deadlines, so
removing what has expired costs O(log n) per entry, once. The byte sizes of
keys and values are measured once when an entry is stored and kept as running
sums, so statistics cost O(1) whatever the number of entries.

Not thread-safe: the cache's lock guards every call.
"""

from __future__ import annotations

import heapq
import itertools
import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from seerrperf._errors import ConfigurationError
from seerrperf._runtime import Clock

__all__ = ["Entry", "Store", "approx_size", "measure"]


class Entry:
    """One cached value, its two deadlines (clock seconds), its sizes and its refresh backoff.

    ``failures`` counts the failed stale-while-revalidate refreshes of this
    entry in a row, and no refresh starts before ``retry_at``; a successful
    load replaces the entry, and so resets both.
    """

    __slots__ = (
        "failures",
        "fresh_until",
        "keep_until",
        "key_bytes",
        "retry_at",
        "seq",
        "value",
        "value_bytes",
    )

    def __init__(
        self,
        value: Any,
        fresh_until: float,
        keep_until: float,
        key_bytes: int,
        value_bytes: int,
        seq: int,
    ) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.keep_until = keep_until
        self.key_bytes = key_bytes
        self.value_bytes = value_bytes
        self.seq = seq  # tells this entry's heap item from an older one of the same key
        self.failures = 0
        self.retry_at = -math.inf


class Store:
    """Entries in LRU order, bounded by ``maxsize``, dropped at their keep deadline.

    Args:
        maxsize: Most entries held.
        clock: Seconds, like ``time.monotonic``.

    Attributes:
        find: ``find(key)`` returns the entry held for ``key`` (fresh, stale or
            past its keep deadline but not yet removed) or ``None``, without
            touching the LRU order: the hit path's lookup.
        touch: ``touch(key)`` marks a held key as the most recently used.
        evictions: Entries removed to make room (not expiry, not deleting).
        key_bytes: Sum of the held keys' :func:`approx_size`, as measured
            when each was stored.
        value_bytes: The same for the values.
        stale_window: Seconds an entry is kept after it expires: the longest
            stale window requested so far.
    """

    __slots__ = (
        "_clock",
        "_data",
        "_heap",
        "_seq",
        "evictions",
        "find",
        "key_bytes",
        "maxsize",
        "stale_window",
        "touch",
        "value_bytes",
    )

    def __init__(self, maxsize: int, clock: Clock) -> None:
        self.maxsize = maxsize
        self._clock = clock
        self._data: OrderedDict[Hashable, Entry] = OrderedDict()
        # (keep_until, seq, key) per stored entry; items of replaced or removed
        # entries are skipped when popped, and rebuilt away when they pile up.
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self.find: Callable[[Hashable], Entry | None] = self._data.get
        self.touch: Callable[[Hashable], None] = self._data.move_to_end
        self.evictions = 0
        self.key_bytes = self.value_bytes = 0
        self.stale_window = 0.0

    def __len__(self) -> int:
        """Entries held, some perhaps past their keep deadline: call :meth:`expire` first."""
        return len(self._data)

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

    def put(
        self, key: Hashable, value: Any, ttl: float, sizes: tuple[int, int] | None = None
    ) -> None:
        """Store ``value`` fresh for ``ttl`` seconds; ``ttl == 0`` drops any entry instead.

        Args:
            key: The key.
            value: The value.
            ttl: Seconds it stays fresh.
            sizes: ``measure(key, value)``, best taken before the cache's lock
                (measured here when not given).
        """
        if ttl == 0:
            self.discard(key)
            return
        if sizes is None:
            sizes = measure(key, value)
        now = self.now()
        fresh_until = now + ttl
        keep_until = fresh_until + self.stale_window
        seq = next(self._seq)
        entry = Entry(value, fresh_until, keep_until, sizes[0], sizes[1], seq)
        data = self._data
        self.expire(now)  # one comparison when nothing is due
        old = data.pop(key, None)
        if old is not None:
            self._forget_sizes(old)
        else:
            while len(data) >= self.maxsize:
                _, evicted = data.popitem(last=False)
                self._forget_sizes(evicted)
                self.evictions += 1
        data[key] = entry
        self.key_bytes += entry.key_bytes
        self.value_bytes += entry.value_bytes
        heapq.heappush(self._heap, (keep_until, seq, key))
        if len(self._heap) > 2 * len(data) + 64:
            self._rebuild_heap()

    def keep_stale_for(self, seconds: float) -> None:
        """Keep entries stored from now on at least ``seconds`` past their expiry."""
        self.stale_window = max(self.stale_window, seconds)

    def peek(self, key: Hashable, now: float | None = None) -> Entry | None:
        """Return the live entry for ``key`` (fresh or stale) without touching the LRU order.

        ``now`` is a reading of :meth:`now`, taken here when not given.
        """
        entry = self._data.get(key)
        if entry is None:
            return None
        if now is None:
            now = self.now()
        if now < entry.keep_until:
            return entry
        self._remove(key, entry)
        return None

    def expire(self, now: float | None = None) -> None:
        """Remove every entry past its keep deadline (amortised O(log n) per entry)."""
        heap = self._heap
        if not heap:
            return
        if now is None:
            now = self.now()
        data = self._data
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            entry = data.get(key)
            if entry is not None and entry.seq == seq:
                self._remove(key, entry)

    def snapshot(self) -> list[tuple[Hashable, Entry]]:
        """Return the live entries, least recently used first, without touching the order."""
        self.expire()
        return list(self._data.items())

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` if it is held."""
        entry = self._data.pop(key, None)
        if entry is not None:
            self._forget_sizes(entry)

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """Remove every live entry whose key satisfies ``predicate``."""
        for key in [key for key, _ in self.snapshot() if predicate(key)]:
            self.discard(key)

    def clear(self) -> None:
        """Remove every entry (not counted as evictions)."""
        self._data.clear()  # in place: find and touch stay bound to it
        self._heap.clear()
        self.key_bytes = self.value_bytes = 0

    def repair(self) -> None:
        """Recompute the sums and the heap from the entries (O(n)).

        For a copy of the store made while another thread may have been in the
        middle of an update: a fork that could not take the cache's lock.
        """
        entries = list(self._data.values())
        self.key_bytes = sum(entry.key_bytes for entry in entries)
        self.value_bytes = sum(entry.value_bytes for entry in entries)
        self._rebuild_heap()

    def exact_sizes(self, entries: list[tuple[Hashable, Entry]]) -> tuple[int, int]:
        """Measure ``entries`` (from :meth:`snapshot`) again, now: O(size of the data)."""
        return (
            sum(approx_size(key) for key, _ in entries),
            sum(approx_size(entry.value) for _, entry in entries),
        )

    def expire_backlog(self) -> int:
        """Items in the expiry heap (live entries plus replaced ones not yet dropped)."""
        return len(self._heap)

    def _remove(self, key: Hashable, entry: Entry) -> None:
        del self._data[key]
        self._forget_sizes(entry)

    def _forget_sizes(self, entry: Entry) -> None:
        self.key_bytes -= entry.key_bytes
        self.value_bytes -= entry.value_bytes

    def _rebuild_heap(self) -> None:
        self._heap = [(entry.keep_until, entry.seq, key) for key, entry in self._data.items()]
        heapq.heapify(self._heap)


def measure(key: Hashable, value: Any) -> tuple[int, int]:
    """``(approx_size(key), approx_size(value))``: what :meth:`Store.put` records."""
    return approx_size(key), approx_size(value)


def _sizeof(obj: object) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # a hostile __sizeof__: the estimate stays an estimate
        return 0


def approx_size(obj: object) -> int:
    """``sys.getsizeof`` summed over ``obj`` and the builtin containers inside it.

    Each object counts once (shared and cyclic references included); an
    object whose size cannot be read counts 0.
    """
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += _sizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return total
