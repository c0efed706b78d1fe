"""Tests for ``NamedCache``: plain access, arguments, the clock, statistics, a reference model."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from seerrperf import ConfigurationError, NamedCache
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

from ._twins import MISSING, Api, Boom, lock_is_free, twins

# -- plain access -------------------------------------------------------------


@twins
@pytest.mark.anyio
@pytest.mark.parametrize("value", [None, 0, "", False, [], {}])
async def test_falsy_values_are_cached_like_any_value(
    api: Api, clock: FakeClock, value: Any
) -> None:
    cache = NamedCache("t", clock=clock)
    cache.set("k", value)
    assert cache.get("k", MISSING) == value
    assert "k" in cache
    calls: list[int] = []
    assert await api.get_or_set(cache, "k", lambda: calls.append(1)) == value
    assert calls == []
    assert await api.get_or_set(cache, "j", lambda: value) == value
    assert await api.get_or_set(cache, "j", lambda: calls.append(1)) == value
    assert calls == []
    assert (cache.stats().hits, cache.stats().misses) == (3, 1)


@twins
@pytest.mark.anyio
async def test_entries_expire_at_their_ttl(api: Api, clock: FakeClock) -> None:
    cache = NamedCache("t", ttl=300, clock=clock)
    cache.set("k", "v")
    assert await api.get_or_set(cache, "j", lambda: "loaded") == "loaded"
    clock.advance(299.5)
    assert cache.get("k") == "v"
    assert await api.get_or_set(cache, "j", lambda: "again") == "loaded"
    clock.advance(0.5)
    assert cache.get("k", MISSING) is MISSING
    assert "k" not in cache
    assert len(cache) == 0
    assert await api.get_or_set(cache, "j", lambda: "again") == "again"


@twins
@pytest.mark.anyio
async def test_per_entry_ttl_overrides_the_cache_ttl(api: Api, clock: FakeClock) -> None:
    cache = NamedCache("t", ttl=300, clock=clock)
    cache.set("short", 1, ttl=5)
    cache.set("long", 2, ttl=1000)
    assert await api.get_or_set(cache, "loaded", lambda: 3, ttl=5) == 3
    clock.advance(500)
    assert cache.get("short", MISSING) is MISSING
    assert cache.get("loaded", MISSING) is MISSING
    assert cache.get("long") == 2


@twins
@pytest.mark.anyio
async def test_ttl_zero_stores_nothing_and_drops_the_old_entry(api: Api, clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    cache.set("k", "old")
    cache.set("k", "new", ttl=0)
    assert cache.get("k", MISSING) is MISSING
    calls: list[int] = []
    for _ in range(3):
        assert await api.get_or_set(cache, "j", lambda: calls.append(1) or "v", ttl=0) == "v"
    assert len(calls) == 3
    assert len(cache) == 0


def test_delete_clear_contains_and_len(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    for key in ("a", "b", "c"):
        cache.set(key, key.upper())
    assert len(cache) == 3
    cache.delete("b")
    cache.delete("absent")
    assert "b" not in cache
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    assert "a" not in cache


def test_delete_matching_removes_the_keys_its_predicate_picks(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    for key in ("user:1", "user:2", "movie:1"):
        cache.set(key, key)
    cache.delete_matching(lambda key: str(key).startswith("user:"))
    assert len(cache) == 1
    assert cache.get("movie:1") == "movie:1"
    assert "user:1" not in cache


def test_a_load_running_for_a_matched_key_stores_nothing(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)

    def loader() -> str:
        cache.delete_matching(lambda key: key == "k")
        return "outdated"

    assert cache.get_or_set("k", loader) == "outdated"
    assert "k" not in cache


def test_least_recently_used_entry_is_evicted_first(clock: FakeClock) -> None:
    cache = NamedCache("t", maxsize=2, clock=clock)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.set("c", 3)
    assert cache.get("b", MISSING) is MISSING
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert cache.stats().evictions == 1
    cache.clear()
    assert cache.stats().evictions == 1  # clearing is not evicting


def test_expired_entries_make_room_before_live_ones_are_evicted(clock: FakeClock) -> None:
    cache = NamedCache("t", maxsize=2, clock=clock)
    cache.set("old", 1, ttl=1)
    cache.set("live", 2, ttl=100)
    clock.advance(2)
    cache.set("new", 3)
    assert cache.get("live") == 2
    assert cache.stats().evictions == 0


@pytest.mark.slow
def test_a_million_distinct_keys_stay_within_maxsize(clock: FakeClock) -> None:
    cache = NamedCache("flood", maxsize=10_000, clock=clock)
    for i in range(1_000_000):
        cache.set(i, i)
    assert len(cache) == 10_000
    stats = cache.stats()
    assert stats.keys == 10_000
    assert stats.evictions == 990_000
    assert cache.get(999_999) == 999_999
    assert cache.get(0, MISSING) is MISSING


def test_an_async_loader_given_to_get_or_set_is_refused(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)

    async def loader() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="use aget_or_set"):
        cache.get_or_set("k", loader)  # type: ignore[arg-type]
    assert "k" not in cache
    assert cache.stats().load_errors == 1


def test_lock_is_released_when_a_key_or_the_clock_raises() -> None:
    class BadKey:
        def __hash__(self) -> int:
            raise Boom("hash")

    failing = False

    def clock() -> float:
        if failing:
            raise Boom("clock")
        return 0.0

    cache = NamedCache("t", clock=clock)
    for operation in (cache.get, cache.delete, lambda k: cache.set(k, 1), cache.__contains__):
        with pytest.raises(Boom):
            operation(BadKey())
        assert lock_is_free(cache)
    failing = True
    with pytest.raises(Boom):
        cache.set("k", 1)
    assert lock_is_free(cache)
    failing = False
    cache.set("k", 1)
    assert cache.get("k") == 1


# -- arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: NamedCache(""), "name"),
        (lambda: NamedCache("t\n"), "name"),
        (lambda: NamedCache(7), "name"),  # type: ignore[arg-type]
        (lambda: NamedCache("t", ttl=-1), "ttl"),
        (lambda: NamedCache("t", ttl=math.nan), "ttl"),
        (lambda: NamedCache("t", ttl=math.inf), "ttl"),
        (lambda: NamedCache("t", ttl=1e12), "ttl"),
        (lambda: NamedCache("t", ttl=10**400), "ttl"),
        (lambda: NamedCache("t", ttl=True), "ttl"),
        (lambda: NamedCache("t", ttl="5"), "ttl"),  # type: ignore[arg-type]
        (lambda: NamedCache("t", maxsize=0), "maxsize"),
        (lambda: NamedCache("t", maxsize=1.5), "maxsize"),  # type: ignore[arg-type]
        (lambda: NamedCache("t", maxsize=True), "maxsize"),
        (lambda: NamedCache("t", clock=5), "clock"),  # type: ignore[arg-type]
        (lambda: NamedCache("t").set("k", 1, ttl=-0.5), "ttl"),
        (lambda: NamedCache("t").set("k", 1, ttl=math.inf), "ttl"),
        (lambda: NamedCache("t").get_or_set("k", int, ttl=-1), "ttl"),
        (lambda: NamedCache("t").get_or_set("k", 5), "loader"),  # type: ignore[arg-type]
        (lambda: NamedCache("t").delete_matching(5), "predicate"),  # type: ignore[arg-type]
        (lambda: NamedCache("t").stats(sizes=1), "sizes"),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_raise_configuration_error(
    build: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        build()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"stale_while_revalidate": -1}, "stale_while_revalidate"),
        ({"stale_if_error": math.inf}, "stale_if_error"),
        ({"ttl": 1e12}, "ttl"),
    ],
)
async def test_invalid_async_arguments_raise_configuration_error(
    options: dict[str, Any], argument: str
) -> None:
    async def loader() -> int:
        return 1

    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        await NamedCache("t").aget_or_set("k", loader, **options)


@pytest.mark.anyio
async def test_a_loader_that_cannot_be_called_is_refused_on_a_miss() -> None:
    cache = NamedCache("t")
    with pytest.raises(ConfigurationError, match="loader must be a callable"):
        await cache.aget_or_set("k", None)  # type: ignore[arg-type]
    assert cache.stats().loads == 0


def test_timer_is_a_deprecated_name_for_clock(clock: FakeClock) -> None:
    with pytest.warns(DeprecationWarning, match="pass clock= instead") as warned:
        cache = NamedCache("t", ttl=10, timer=clock)
    assert warned[0].filename == __file__  # points at the caller
    cache.set("k", 1)
    clock.advance(10)
    assert "k" not in cache
    with pytest.raises(ConfigurationError, match="must not both be given"):
        NamedCache("t", clock=clock, timer=clock)


# -- statistics ---------------------------------------------------------------


def _raise_boom() -> Any:
    raise Boom("loader failed")


def test_stats_count_every_lookup_once(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    assert cache.stats().hit_rate == 0.0
    cache.get("absent")
    cache.get_or_set("k", lambda: "v")
    cache.get_or_set("k", lambda: "unused")
    cache.get("k")
    with pytest.raises(Boom):
        cache.get_or_set("bad", _raise_boom)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stale_hits) == (2, 3, 0)
    assert (stats.loads, stats.load_errors, stats.keys, stats.loading) == (2, 1, 1, 0)
    assert stats.hit_rate == pytest.approx(2 / 5)
    assert stats.maxsize == 10_000
    assert stats.as_dict()["hit_rate"] == stats.hit_rate
    assert set(stats.as_dict()) == {
        "name",
        "hits",
        "misses",
        "stale_hits",
        "loads",
        "coalesced",
        "load_errors",
        "loading",
        "evictions",
        "keys",
        "maxsize",
        "hit_rate",
        "key_bytes",
        "value_bytes",
        "load_timeouts",
        "loads_rejected",
        "shared_hits",
        "local_only",
    }


def test_stats_approximate_key_and_value_bytes_through_containers(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    cache.set("small", 1)
    small = cache.stats()
    cache.set("big", {"results": ["x" * 10_000, {"nested": "y" * 5_000}]})
    big = cache.stats()
    assert small.key_bytes > 0
    assert small.value_bytes > 0
    assert big.value_bytes - small.value_bytes > 15_000
    assert big.key_bytes > small.key_bytes


def test_stats_without_sizes_skip_the_walk_but_count_keys(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    cache.set("a", "x" * 1000)
    cache.set("b", 2)
    quick = cache.stats(sizes=False)
    full = cache.stats()
    assert (quick.keys, full.keys) == (2, 2)
    assert (quick.key_bytes, quick.value_bytes) == (0, 0)
    assert full.value_bytes > 1000


def test_no_key_or_value_appears_in_repr_or_stats(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    cache.set(f"token={SENTINEL}", SENTINEL)
    assert SENTINEL not in repr(cache)
    assert SENTINEL not in repr(cache.stats())
    assert SENTINEL not in str(cache.stats().as_dict())


# -- property-based -----------------------------------------------------------


class CacheMatchesReferenceModel(RuleBasedStateMachine):
    """Random get/set/delete/get_or_set/advance sequences against a plain LRU + TTL model."""

    MAXSIZE = 3
    TTL = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cache = NamedCache("model", ttl=self.TTL, maxsize=self.MAXSIZE, clock=self.clock)
        self.model: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.hits = self.misses = self.loads = self.evictions = 0

    keys = st.sampled_from("abcde")
    values = st.sampled_from([None, 0, "", False, 1, "x"])
    ttls = st.sampled_from([None, 0, 1, 3, 10, 25])

    def purge(self) -> None:
        for key in [k for k, (_, until) in self.model.items() if not self.clock() < until]:
            del self.model[key]

    def fresh(self, key: str) -> Any:
        item = self.model.get(key)
        return item[0] if item is not None and self.clock() < item[1] else MISSING

    def lookup(self, key: str) -> Any:
        value = self.fresh(key)
        if value is MISSING:
            self.misses += 1
        else:
            self.hits += 1
            self.model.move_to_end(key)
        return value

    def store(self, key: str, value: Any, ttl: float | None) -> None:
        ttl = self.TTL if ttl is None else ttl
        if ttl == 0:
            self.model.pop(key, None)
            return
        self.purge()
        if key in self.model:
            self.model.move_to_end(key)
        elif len(self.model) >= self.MAXSIZE:
            self.model.popitem(last=False)
            self.evictions += 1
        self.model[key] = (value, self.clock() + ttl)

    @staticmethod
    def same(got: Any, expected: Any) -> bool:
        return got is expected or (type(got) is type(expected) and got == expected)

    @rule(key=keys, value=values, ttl=ttls)
    def set(self, key: str, value: Any, ttl: float | None) -> None:
        self.cache.set(key, value, ttl)
        self.store(key, value, ttl)

    @rule(key=keys)
    def get(self, key: str) -> None:
        assert self.same(self.cache.get(key, MISSING), self.lookup(key))

    @rule(key=keys, value=values, ttl=ttls)
    def get_or_set(self, key: str, value: Any, ttl: float | None) -> None:
        calls: list[int] = []
        got = self.cache.get_or_set(key, lambda: calls.append(1) or value, ttl)
        expected = self.lookup(key)
        assert len(calls) == (1 if expected is MISSING else 0)
        if expected is MISSING:
            self.loads += 1
            self.store(key, value, ttl)
            expected = value
        assert self.same(got, expected)

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.cache.delete(key)
        self.model.pop(key, None)

    @rule(key=keys)
    def contains(self, key: str) -> None:
        assert (key in self.cache) == (self.fresh(key) is not MISSING)

    @rule(seconds=st.sampled_from([0, 0.5, 1, 2, 5, 11]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def clear(self) -> None:
        self.cache.clear()
        self.model.clear()

    @invariant()
    def size_and_counters_agree(self) -> None:
        self.purge()
        assert len(self.cache) == len(self.model) <= self.MAXSIZE
        stats = self.cache.stats()
        assert (stats.hits, stats.misses, stats.loads, stats.evictions) == (
            self.hits,
            self.misses,
            self.loads,
            self.evictions,
        )
        exact = self.cache.stats(sizes="exact")  # the running sums match a full walk
        assert (stats.keys, stats.key_bytes, stats.value_bytes) == (
            exact.keys,
            exact.key_bytes,
            exact.value_bytes,
        )


TestCacheMatchesReferenceModel = CacheMatchesReferenceModel.TestCase
TestCacheMatchesReferenceModel.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
