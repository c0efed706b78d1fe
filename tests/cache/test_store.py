"""Tests for the bounded storage behind a cache: deadlines, LRU eviction, reads, sizes."""

from __future__ import annotations

import sys

from seerrperf._cache.store import Store, approx_size, measure
from seerrperf.testing import FakeClock


def keys(store: Store) -> list[object]:
    return [key for key, _ in store.snapshot()]


def test_an_entry_is_fresh_for_its_ttl_and_kept_for_the_stale_window(clock: FakeClock) -> None:
    store = Store(10, clock)
    store.keep_stale_for(5)
    store.keep_stale_for(2)  # the longest window requested wins
    store.put("k", "v", ttl=10)
    entry = store.peek("k")
    assert entry is not None
    assert (entry.value, entry.fresh_until, entry.keep_until) == ("v", 10, 15)
    clock.advance(14.5)
    assert store.peek("k") is entry  # stale, still held
    clock.advance(0.5)
    assert store.peek("k") is None
    assert len(store) == 0


def test_put_with_ttl_zero_drops_the_entry(clock: FakeClock) -> None:
    store = Store(10, clock)
    store.put("k", "old", ttl=10)
    store.put("k", "new", ttl=0)
    assert store.peek("k") is None
    store.put("absent", "v", ttl=0)
    assert len(store) == 0


def test_evictions_count_lru_removals_only(clock: FakeClock) -> None:
    store = Store(2, clock)
    store.put("a", 1, ttl=10)
    store.put("b", 2, ttl=10)
    store.touch("a")  # as a hit does
    store.put("c", 3, ttl=10)
    assert keys(store) == ["a", "c"]
    assert store.evictions == 1
    store.discard("a")
    store.clear()
    assert len(store) == 0
    assert store.evictions == 1  # deleting and clearing are not evicting


def test_expired_entries_make_room_before_live_ones_are_evicted(clock: FakeClock) -> None:
    store = Store(2, clock)
    store.put("old", 1, ttl=1)
    store.put("live", 2, ttl=100)
    clock.advance(2)
    store.put("new", 3, ttl=100)
    assert sorted(keys(store)) == ["live", "new"]  # type: ignore[type-var]
    assert store.evictions == 0


def test_peek_and_snapshot_do_not_touch_the_lru_order(clock: FakeClock) -> None:
    store = Store(2, clock)
    store.put("a", 1, ttl=10)
    store.put("b", 2, ttl=10)
    assert store.peek("a") is not None
    assert [key for key, _ in store.snapshot()] == ["a", "b"]
    store.put("c", 3, ttl=10)
    assert keys(store) == ["b", "c"]  # "a" was still the least recently used
    assert store.peek("a") is None


def test_discard_ignores_absent_and_expired_keys(clock: FakeClock) -> None:
    store = Store(10, clock)
    store.put("k", 1, ttl=1)
    clock.advance(1)
    store.discard("k")
    store.discard("never")
    assert len(store) == 0


def test_discard_where_removes_the_matching_keys_only(clock: FakeClock) -> None:
    store = Store(10, clock)
    for key in ("user:1", "user:2", "movie:1"):
        store.put(key, key, ttl=10)
    store.discard_where(lambda key: str(key).startswith("user:"))
    assert keys(store) == ["movie:1"]


def test_approx_size_walks_builtin_containers_once_per_object() -> None:
    shared = "x" * 10_000
    assert approx_size(shared) == sys.getsizeof(shared)
    nested = {"results": [shared, {"nested": shared}], "n": (1, 2)}
    assert approx_size(nested) > approx_size(shared)
    assert approx_size(nested) < 2 * sys.getsizeof(shared)  # counted once, not twice
    cycle: list[object] = []
    cycle.append(cycle)
    assert approx_size(cycle) == sys.getsizeof(cycle)


def test_sizes_are_kept_as_running_sums_through_every_change(clock: FakeClock) -> None:
    store = Store(2, clock)
    store.keep_stale_for(5)

    def sums() -> tuple[int, int]:
        return store.key_bytes, store.value_bytes

    def walked() -> tuple[int, int]:
        return store.exact_sizes(store.snapshot())

    store.put("a", [1, 2, 3], ttl=10)
    assert sums() == measure("a", [1, 2, 3]) == walked()
    store.put("a", "x" * 1_000, ttl=10)  # replaced
    store.put("b", {"k": "v"}, ttl=1)
    assert sums() == walked()
    store.put("c", ("t",), ttl=10)  # evicts "a", the least recently used
    assert store.evictions == 1
    assert sums() == walked()
    clock.advance(6)  # "b" is past its keep deadline (1 + 5)
    store.expire()
    assert len(store) == 1
    assert sums() == measure("c", ("t",)) == walked()
    store.discard("c")
    assert sums() == (0, 0)
    store.put("d", 1, ttl=10)
    store.clear()
    assert sums() == (0, 0)


def test_the_expiry_heap_stays_bounded_when_one_key_is_stored_again_and_again(
    clock: FakeClock,
) -> None:
    store = Store(10, clock)
    for i in range(10_000):
        store.put("k", i, ttl=1_000)
    assert len(store) == 1
    assert store.expire_backlog() <= 2 * len(store) + 64


def test_repair_recomputes_the_sums_and_the_expiry_order(clock: FakeClock) -> None:
    store = Store(10, clock)
    store.put("a", "v" * 100, ttl=1)
    store.put("b", "w", ttl=10)
    store.key_bytes = store.value_bytes = -1  # as a copy made mid-update could be
    store.repair()
    assert (store.key_bytes, store.value_bytes) == store.exact_sizes(store.snapshot())
    clock.advance(2)
    store.expire()
    assert [key for key, _ in store.snapshot()] == ["b"]


def test_a_value_whose_size_cannot_be_read_counts_zero() -> None:
    class Hostile:
        def __sizeof__(self) -> int:
            raise RuntimeError("no size")

    assert approx_size([Hostile()]) == sys.getsizeof([None])
