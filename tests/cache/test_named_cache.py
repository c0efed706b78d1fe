"""Tests for the named caches, single-flight loading, stale serving and ``cached``."""

from __future__ import annotations

import gc
import inspect
import itertools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from seerrperf import (
    CacheLoadAbortedError,
    CacheManager,
    CacheStats,
    ConfigurationError,
    NamedCache,
    cached,
)
from tests._support import SENTINEL

both_backends = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
MISSING = object()


class FakeClock:
    """An injectable ``timer=`` that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


class ObservedCache(NamedCache):
    """Releases ``missed`` on every miss, so a test knows when all threads have looked up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.missed = threading.Semaphore(0)

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = super().get(key, default)
        if value is default:
            self.missed.release()
        return value


def run_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Run ``target`` in ``count`` threads; return each result or exception."""
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = target()
        except BaseException as exc:  # recorded for the test to assert on
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    return results


async def all_loads_done() -> None:
    """Wait until the detached loads have finished and their callbacks have run."""
    await anyio.wait_all_tasks_blocked()
    await anyio.lowlevel.checkpoint()  # asyncio runs done-callbacks one iteration later


def lock_is_free(cache: NamedCache) -> bool:
    if not cache._lock.acquire(blocking=False):
        return False
    cache._lock.release()
    return True


# -- plain access -------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, "", False, [], {}])
def test_falsy_values_are_cached_like_any_value(value: Any) -> None:
    cache = NamedCache("t", timer=FakeClock())
    cache.set("k", value)
    assert cache.get("k", MISSING) == value
    assert "k" in cache
    calls = []
    assert cache.get_or_set("k", lambda: calls.append(1)) == value
    assert calls == []
    assert cache.stats().hits == 2
    assert cache.stats().misses == 0


def test_entries_expire_at_their_ttl() -> None:
    clock = FakeClock()
    cache = NamedCache("t", ttl=300, timer=clock)
    cache.set("k", "v")
    clock.advance(299.5)
    assert cache.get("k") == "v"
    clock.advance(0.5)
    assert cache.get("k", MISSING) is MISSING
    assert "k" not in cache
    assert len(cache) == 0


def test_per_entry_ttl_overrides_the_cache_ttl() -> None:
    clock = FakeClock()
    cache = NamedCache("t", ttl=300, timer=clock)
    cache.set("short", 1, ttl=5)
    cache.set("long", 2, ttl=1000)
    clock.advance(500)
    assert cache.get("short", MISSING) is MISSING
    assert cache.get("long") == 2


def test_ttl_zero_stores_nothing_and_drops_the_old_entry() -> None:
    cache = NamedCache("t", timer=FakeClock())
    cache.set("k", "old")
    cache.set("k", "new", ttl=0)
    assert cache.get("k", MISSING) is MISSING
    calls: list[int] = []
    for _ in range(3):
        assert cache.get_or_set("j", lambda: calls.append(1) or "v", ttl=0) == "v"
    assert len(calls) == 3
    assert len(cache) == 0


def test_delete_clear_contains_and_len() -> None:
    cache = NamedCache("t", timer=FakeClock())
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


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache = NamedCache("t", maxsize=2, timer=FakeClock())
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


def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    clock = FakeClock()
    cache = NamedCache("t", maxsize=2, timer=clock)
    cache.set("old", 1, ttl=1)
    cache.set("live", 2, ttl=100)
    clock.advance(2)
    cache.set("new", 3)
    assert cache.get("live") == 2
    assert cache.stats().evictions == 0


@pytest.mark.slow
def test_a_million_distinct_keys_stay_within_maxsize() -> None:
    cache = NamedCache("flood", maxsize=10_000, timer=FakeClock())
    for i in range(1_000_000):
        cache.set(i, i)
    assert len(cache) == 10_000
    stats = cache.stats()
    assert stats.keys == 10_000
    assert stats.evictions == 990_000
    assert cache.get(999_999) == 999_999
    assert cache.get(0, MISSING) is MISSING


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: NamedCache(""), "name"),
        (lambda: NamedCache("t", ttl=-1), "ttl"),
        (lambda: NamedCache("t", ttl=math.nan), "ttl"),
        (lambda: NamedCache("t", ttl=True), "ttl"),
        (lambda: NamedCache("t", ttl="5"), "ttl"),  # type: ignore[arg-type]
        (lambda: NamedCache("t", maxsize=0), "maxsize"),
        (lambda: NamedCache("t", maxsize=1.5), "maxsize"),  # type: ignore[arg-type]
        (lambda: NamedCache("t").set("k", 1, ttl=-0.5), "ttl"),
        (lambda: NamedCache("t").get_or_set("k", int, ttl=-1), "ttl"),
        (lambda: cached(NamedCache("t"), ttl=-1), "ttl"),
        (lambda: CacheManager.seerr(maxsize=0), "maxsize"),
    ],
)
def test_invalid_arguments_raise_configuration_error(
    build: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=argument):
        build()


@pytest.mark.anyio
@pytest.mark.parametrize("window", ["stale_while_revalidate", "stale_if_error"])
async def test_invalid_stale_window_raises_configuration_error(window: str) -> None:
    cache = NamedCache("t")

    async def loader() -> int:
        return 1

    with pytest.raises(ConfigurationError, match=window):
        await cache.aget_or_set("k", loader, **{window: -1})


# -- statistics ---------------------------------------------------------------


def test_stats_count_every_lookup_once() -> None:
    cache = NamedCache("t", timer=FakeClock())
    assert cache.stats().hit_rate == 0.0
    cache.get("absent")
    cache.get_or_set("k", lambda: "v")
    cache.get_or_set("k", lambda: "unused")
    cache.get("k")
    with pytest.raises(Boom):
        cache.get_or_set("bad", _raise_boom)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.stale_hits) == (2, 3, 0)
    assert (stats.loads, stats.load_errors, stats.keys) == (2, 1, 1)
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
        "evictions",
        "keys",
        "maxsize",
        "hit_rate",
        "key_bytes",
        "value_bytes",
    }


def _raise_boom() -> Any:
    raise Boom("loader failed")


def test_stats_approximate_key_and_value_bytes_through_containers() -> None:
    cache = NamedCache("t", timer=FakeClock())
    cache.set("small", 1)
    small = cache.stats()
    cache.set("big", {"results": ["x" * 10_000, {"nested": "y" * 5_000}]})
    big = cache.stats()
    assert small.key_bytes > 0
    assert small.value_bytes > 0
    assert big.value_bytes - small.value_bytes > 15_000
    assert big.key_bytes > small.key_bytes


def test_no_key_or_value_appears_in_repr_or_stats() -> None:
    cache = NamedCache("t", timer=FakeClock())
    cache.set(f"token={SENTINEL}", SENTINEL)
    assert SENTINEL not in repr(cache)
    assert SENTINEL not in repr(cache.stats())
    assert SENTINEL not in str(cache.stats().as_dict())


# -- the manager --------------------------------------------------------------


def test_get_cache_returns_the_same_instance() -> None:
    manager = CacheManager()
    first = manager.get_cache("tmdb", ttl=21_600, maxsize=500)
    assert manager.get_cache("tmdb") is first
    assert manager.get_cache("tmdb", ttl=21_600) is first
    assert manager.get_cache("tmdb", maxsize=500) is first
    assert (first.ttl, first.maxsize) == (21_600, 500)
    default = manager.get_cache("other")
    assert (default.ttl, default.maxsize) == (300, 10_000)


@pytest.mark.parametrize("options", [{"ttl": 300}, {"maxsize": 10_000}, {"ttl": 60, "maxsize": 5}])
def test_get_cache_rejects_different_explicit_options(options: dict[str, Any]) -> None:
    manager = CacheManager()
    manager.get_cache("tmdb", ttl=21_600, maxsize=500)
    with pytest.raises(ConfigurationError, match="already exists"):
        manager.get_cache("tmdb", **options)


def test_seerr_preset_has_seerrs_ten_caches_with_their_ttls_and_a_bound() -> None:
    manager = CacheManager.seerr(maxsize=1_000)
    expected = {
        "tmdb": 21_600,
        "radarr": 300,
        "sonarr": 300,
        "rt": 43_200,
        "imdb": 43_200,
        "github": 21_600,
        "plexguid": 604_800,
        "plextv": 604_800,
        "plexwatchlist": 300,
        "tvdb": 21_600,
    }
    assert manager.names() == list(expected)
    for name, ttl in expected.items():
        cache = manager.get_cache(name)
        assert (cache.ttl, cache.maxsize) == (ttl, 1_000)
    assert CacheManager.seerr().get_cache("tmdb").maxsize == 10_000


def test_manager_stats_clear_and_unknown_names() -> None:
    manager = CacheManager(timer=FakeClock())
    manager.get_cache("a").set("k", 1)
    manager.get_cache("b").set("k", 2)
    stats = manager.stats()
    assert set(stats) == {"a", "b"}
    assert all(isinstance(s, CacheStats) and s.keys == 1 for s in stats.values())
    manager.clear("a")
    assert len(manager.get_cache("a")) == 0
    assert len(manager.get_cache("b")) == 1
    with pytest.raises(KeyError, match="nope"):
        manager.clear("nope")
    manager.clear_all()
    assert len(manager.get_cache("b")) == 0


# -- sync single-flight -------------------------------------------------------


def test_twenty_threads_missing_one_key_run_the_loader_once() -> None:
    cache = ObservedCache("t", timer=FakeClock())
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        for _ in range(20):  # every thread has missed, so all of them wait for this run
            assert cache.missed.acquire(timeout=10)
        return "value"

    results = run_threads(20, lambda: cache.get_or_set("k", loader))
    assert results == ["value"] * 20
    assert len(calls) == 1
    stats = cache.stats()
    assert (stats.misses, stats.loads) == (20, 1)
    assert cache._flights == {}


def test_a_thread_loader_exception_reaches_every_waiter_and_is_not_cached() -> None:
    cache = ObservedCache("t", timer=FakeClock())
    error = Boom("upstream down")

    def loader() -> str:
        for _ in range(20):
            assert cache.missed.acquire(timeout=10)
        raise error

    results = run_threads(20, lambda: cache.get_or_set("k", loader))
    assert all(result is error for result in results)
    assert cache.get_or_set("k", lambda: "recovered") == "recovered"
    assert cache.stats().load_errors == 1


class Interrupt(BaseException):
    pass


def test_waiters_of_an_interrupted_thread_load_get_cache_load_aborted() -> None:
    cache = ObservedCache("t", timer=FakeClock())

    def loader() -> str:
        for _ in range(3):
            assert cache.missed.acquire(timeout=10)
        raise Interrupt

    results = run_threads(3, lambda: cache.get_or_set("k", loader))
    assert sum(isinstance(r, Interrupt) for r in results) == 1  # the thread that ran it
    assert sum(isinstance(r, CacheLoadAbortedError) for r in results) == 2
    assert cache._flights == {}


def test_lock_is_released_when_a_key_or_the_timer_raises() -> None:
    class BadKey:
        def __hash__(self) -> int:
            raise Boom("hash")

    fail = [False]

    def timer() -> float:
        if fail[0]:
            raise Boom("clock")
        return 0.0

    cache = NamedCache("t", timer=timer)
    for operation in (cache.get, cache.delete, lambda k: cache.set(k, 1), cache.__contains__):
        with pytest.raises(Boom):
            operation(BadKey())
        assert lock_is_free(cache)
    fail[0] = True
    with pytest.raises(Boom):
        cache.set("k", 1)
    assert lock_is_free(cache)
    fail[0] = False
    cache.set("k", 1)
    assert cache.get("k") == 1


# -- async single-flight ------------------------------------------------------


@both_backends
@pytest.mark.anyio
async def test_a_thousand_tasks_missing_one_key_run_the_loader_once() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value"

    results: list[str] = []

    async def caller() -> None:
        results.append(await cache.aget_or_set("k", loader))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(1_000):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert results == ["value"] * 1_000
    assert calls == 1
    stats = cache.stats()
    assert (stats.misses, stats.loads, stats.coalesced) == (1_000, 1, 999)
    assert cache.get("k") == "value"


@both_backends
@pytest.mark.anyio
async def test_a_loader_exception_reaches_every_task_and_is_not_cached() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()
    error = Boom("upstream down")

    async def loader() -> str:
        await release.wait()
        raise error

    caught: list[BaseException] = []

    async def caller() -> None:
        try:
            await cache.aget_or_set("k", loader)
        except Boom as exc:
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()

    async def recovered() -> str:
        return "recovered"

    assert len(caught) == 50
    assert all(exc is error for exc in caught)
    assert await cache.aget_or_set("k", recovered) == "recovered"
    assert cache.stats().load_errors == 1


@both_backends
@pytest.mark.anyio
async def test_cancelling_the_first_caller_does_not_cancel_the_shared_load() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()
    finished = anyio.Event()

    async def loader() -> str:
        await release.wait()
        finished.set()
        return "value"

    first = anyio.CancelScope()
    results: list[str] = []

    async def first_caller() -> None:
        with first:
            results.append(await cache.aget_or_set("k", loader))

    async def second_caller() -> None:
        results.append(await cache.aget_or_set("k", loader))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_caller)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second_caller)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert first.cancelled_caught
    assert results == ["value"]
    assert finished.is_set()
    assert cache.get("k") == "value"
    assert cache.stats().loads == 1


@both_backends
@pytest.mark.anyio
async def test_a_load_whose_callers_all_left_still_stores_its_result() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()

    async def loader() -> str:
        await release.wait()
        return "value"

    with anyio.fail_after(10):
        with anyio.move_on_after(0):
            await cache.aget_or_set("k", loader)
        release.set()
        await all_loads_done()
    assert cache.get("k") == "value"
    assert cache._flights == {}
    assert not cache._tasks


@both_backends
@pytest.mark.anyio
async def test_delete_during_a_load_keeps_its_result_out_of_the_cache() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()

    async def loader() -> str:
        await release.wait()
        return "outdated"

    results: list[str] = []

    async def caller() -> None:
        results.append(await cache.aget_or_set("k", loader))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            cache.delete("k")
            release.set()
    assert results == ["outdated"]  # its callers still get the answer
    assert cache.get("k", MISSING) is MISSING
    assert cache._flights == {}


def test_event_loops_in_two_threads_do_not_share_a_load() -> None:
    cache = NamedCache("t", timer=FakeClock())
    started = threading.Event()
    release = threading.Event()

    async def slow_loader() -> str:
        started.set()
        await anyio.to_thread.run_sync(release.wait, 10)
        return "from thread"

    async def fast_loader() -> str:
        return "from main"

    results = []
    thread = threading.Thread(
        target=lambda: results.append(anyio.run(cache.aget_or_set, "k", slow_loader))
    )
    thread.start()
    try:
        assert started.wait(10)
        assert anyio.run(cache.aget_or_set, "k", fast_loader, backend="trio") == "from main"
    finally:
        release.set()
        thread.join(10)
    assert results == ["from thread"]
    assert cache.stats().loads == 2


# -- stale-while-revalidate and stale-if-error --------------------------------


@both_backends
@pytest.mark.anyio
async def test_stale_while_revalidate_serves_stale_and_refreshes_exactly_once() -> None:
    clock = FakeClock()
    cache = NamedCache("t", timer=clock)
    release = anyio.Event()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return f"v{calls}"

    async def get() -> str:
        return await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    assert await get() == "v1"
    clock.advance(15)
    with anyio.fail_after(10):
        # Nothing awaits the refresh, so every caller answers without blocking.
        assert [await get() for _ in range(100)] == ["v1"] * 100
        await anyio.wait_all_tasks_blocked()
        assert calls == 2
        release.set()
        await all_loads_done()
    assert await get() == "v2"
    stats = cache.stats()
    assert (stats.stale_hits, stats.loads, stats.hits) == (100, 2, 1)
    assert not cache._tasks


@both_backends
@pytest.mark.anyio
async def test_entries_are_dropped_after_the_stale_window() -> None:
    clock = FakeClock()
    cache = NamedCache("t", timer=clock)
    values = iter(["v1", "v2"])

    async def loader() -> str:
        return next(values)

    assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v1"
    clock.advance(15)
    assert len(cache) == 0
    assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v2"
    assert cache.stats().stale_hits == 0


@both_backends
@pytest.mark.anyio
async def test_a_failing_refresh_is_logged_and_keeps_the_stale_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    cache = NamedCache("refreshing", timer=clock)
    outcomes = iter(["v1", Boom(f"api_key={SENTINEL}"), "v3"])

    async def loader() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def get() -> str:
        return await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    with caplog.at_level(logging.WARNING, logger="seerrperf.cache"):
        assert await get() == "v1"
        clock.advance(15)
        assert await get() == "v1"
        await anyio.wait_all_tasks_blocked()
        gc.collect()  # asyncio reports unretrieved task exceptions on collection
        assert await get() == "v1"  # still stale; the failure allowed a new refresh
        await anyio.wait_all_tasks_blocked()
    assert await get() == "v3"
    warnings = [r for r in caplog.records if r.name == "seerrperf.cache"]
    assert len(warnings) == 1
    assert "refreshing" in warnings[0].getMessage()
    assert "Boom" in warnings[0].getMessage()
    assert SENTINEL not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert cache.stats().load_errors == 1


@both_backends
@pytest.mark.anyio
async def test_stale_if_error_serves_stale_inside_the_window_and_raises_outside() -> None:
    clock = FakeClock()
    cache = NamedCache("t", timer=clock)

    async def good() -> str:
        return "v1"

    async def bad() -> str:
        raise Boom("down")

    assert await cache.aget_or_set("k", good, ttl=10, stale_if_error=30) == "v1"
    clock.advance(20)
    assert await cache.aget_or_set("k", bad, ttl=10, stale_if_error=30) == "v1"
    stats = cache.stats()
    assert (stats.stale_hits, stats.misses, stats.load_errors) == (
        1,
        1,
        1,
    )  # 1 miss: the first load
    clock.advance(25)  # 35 s past expiry: outside the window
    with pytest.raises(Boom):
        await cache.aget_or_set("k", bad, ttl=10, stale_if_error=30)
    assert cache.stats().misses == 2


# -- the cached decorator -----------------------------------------------------


def test_cached_sync_function_caches_invalidates_and_clears_its_own_entries() -> None:
    cache = NamedCache("queries", timer=FakeClock())
    calls: list[tuple[Any, ...]] = []

    @cached(cache, ttl=60)
    def recent_requests(user: int, *, limit: int = 10) -> list[int] | None:
        """Docstring kept."""
        calls.append((user, limit))
        return None if user == 0 else [user] * limit

    @cached(cache)
    def other(x: int) -> int:
        return x

    assert recent_requests(1, limit=2) == [1, 1]
    assert recent_requests(1, limit=2) == [1, 1]
    assert recent_requests(0) is None
    assert recent_requests(0) is None  # None is cached too
    assert calls == [(1, 2), (0, 10)]
    assert recent_requests.__name__ == "recent_requests"
    assert recent_requests.__doc__ == "Docstring kept."
    recent_requests.invalidate(1, limit=2)
    recent_requests(1, limit=2)
    assert calls[-1] == (1, 2)
    assert len(calls) == 3
    other(5)
    recent_requests.cache_clear()
    assert len(cache) == 1  # only other()'s entry is left
    recent_requests(0)
    assert len(calls) == 4


def test_cached_custom_key_and_same_named_closures() -> None:
    cache = NamedCache("t", timer=FakeClock())

    def make(offset: int) -> Callable[[int], int]:
        @cached(cache)
        def add(x: int) -> int:
            return x + offset

        return add

    assert make(1)(1) == 2
    assert make(10)(1) == 11  # same qualname, separate entries

    @cached(cache, key=lambda client, movie_id: movie_id)
    def movie(client: object, movie_id: int) -> str:
        return f"movie {movie_id}"

    assert movie(object(), 7) == "movie 7"
    assert movie(object(), 7) == "movie 7"  # another client, same key
    assert cache.stats().hits == 1


@both_backends
@pytest.mark.anyio
async def test_cached_async_function_shares_one_call() -> None:
    cache = NamedCache("t", timer=FakeClock())
    release = anyio.Event()
    calls = 0

    @cached(cache)
    async def fetch(movie_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"id": movie_id}

    assert inspect.iscoroutinefunction(fetch)
    results: list[dict[str, int]] = []

    async def caller() -> None:
        results.append(await fetch(42))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert results == [{"id": 42}] * 20
    assert calls == 1
    fetch.invalidate(42)
    assert await fetch(42) == {"id": 42}
    assert calls == 2


# -- property-based -----------------------------------------------------------


class CacheMatchesReferenceModel(RuleBasedStateMachine):
    """Random get/set/delete/get_or_set/advance sequences against a plain LRU + TTL model."""

    MAXSIZE = 3
    TTL = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cache = NamedCache("model", ttl=self.TTL, maxsize=self.MAXSIZE, timer=self.clock)
        self.model: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.hits = self.misses = self.loads = self.evictions = 0

    keys = st.sampled_from("abcde")
    values = st.sampled_from([None, 0, "", False, 1, "x"])
    ttls = st.sampled_from([None, 0, 1, 3, 10, 25])

    def purge(self) -> None:
        for key in [k for k, (_, until) in self.model.items() if not self.clock.now < until]:
            del self.model[key]

    def fresh(self, key: str) -> Any:
        item = self.model.get(key)
        return item[0] if item is not None and self.clock.now < item[1] else MISSING

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
        self.model[key] = (value, self.clock.now + ttl)

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


TestCacheMatchesReferenceModel = CacheMatchesReferenceModel.TestCase
TestCacheMatchesReferenceModel.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    cancel_at=st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=1, max_size=6),
    release_at=st.integers(0, 6),
    fails=st.booleans(),
)
def test_a_shared_load_survives_cancellation_at_any_point(
    backend: str, cancel_at: list[int | None], release_at: int, fails: bool
) -> None:
    async def main() -> None:
        cache = NamedCache("p", timer=FakeClock())
        release = anyio.Event()
        calls = 0

        async def loader() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            if fails:
                raise Boom("inside the shared load")
            return "value"

        scopes = [anyio.CancelScope() for _ in cancel_at]
        outcomes: dict[int, object] = {}

        async def caller(index: int) -> None:
            with scopes[index]:
                try:
                    outcomes[index] = await cache.aget_or_set("k", loader)
                except Boom as exc:
                    outcomes[index] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for index in range(len(cancel_at)):
                    tg.start_soon(caller, index)
                for step in range(7):
                    for index, at in enumerate(cancel_at):
                        if at == step:
                            scopes[index].cancel()
                    if step == release_at:
                        release.set()
                    await anyio.lowlevel.checkpoint()
            await all_loads_done()

        assert calls == 1
        for index, at in enumerate(cancel_at):
            if index in outcomes:
                assert isinstance(outcomes[index], Boom) if fails else outcomes[index] == "value"
            else:
                assert at is not None
                assert scopes[index].cancelled_caught
        stats = cache.stats()
        assert (stats.loads, stats.load_errors) == (1, int(fails))
        assert stats.misses == len(cancel_at)
        assert (cache.get("k", MISSING) == "value") is not fails
        assert cache._flights == {}
        assert not cache._tasks

    anyio.run(main, backend=backend)


class ClockError(Exception):
    pass


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None)
@given(fail_on=st.sets(st.integers(0, 15), max_size=3), sync_callers=st.integers(0, 2))
def test_a_failing_clock_never_strands_callers_or_holds_the_lock(
    backend: str, fail_on: set[int], sync_callers: int
) -> None:
    ticks = itertools.count()

    def timer() -> float:
        if next(ticks) in fail_on:
            raise ClockError
        return 0.0

    cache = NamedCache("t", timer=timer)

    async def main() -> None:
        release = anyio.Event()

        async def loader() -> str:
            await release.wait()
            return "value"

        outcomes: list[object] = []

        async def caller() -> None:
            try:
                outcomes.append(await cache.aget_or_set("k", loader, stale_if_error=5))
            except ClockError as exc:
                outcomes.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(caller)
                for _ in range(3):  # let the callers join the load
                    await anyio.lowlevel.checkpoint()
                release.set()
            await all_loads_done()
        for _ in range(sync_callers):
            try:
                outcomes.append(cache.get_or_set("k", lambda: "value"))
            except ClockError as exc:
                outcomes.append(exc)
        assert len(outcomes) == 3 + sync_callers
        assert all(o == "value" or isinstance(o, ClockError) for o in outcomes)
        assert lock_is_free(cache)
        assert cache._flights == {}
        assert not cache._tasks

    anyio.run(main, backend=backend)


def test_an_async_loader_given_to_get_or_set_is_refused() -> None:
    cache = NamedCache("t", timer=FakeClock())

    async def loader() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="use aget_or_set"):
        cache.get_or_set("k", loader)  # type: ignore[arg-type]
    assert "k" not in cache
    assert cache.stats().load_errors == 1


def test_stats_without_sizes_skip_the_walk_but_count_keys() -> None:
    cache = NamedCache("t", timer=FakeClock())
    cache.set("a", "x" * 1000)
    cache.set("b", 2)
    quick = cache.stats(sizes=False)
    full = cache.stats()
    assert (quick.keys, full.keys) == (2, 2)
    assert (quick.key_bytes, quick.value_bytes) == (0, 0)
    assert full.value_bytes > 1000
