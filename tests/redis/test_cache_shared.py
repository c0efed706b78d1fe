"""NamedCache and CacheManager with a shared tier, on real Valkey, in one process.

Two backends in one process are two members of a fleet (each has its own
source id, subscriber and counters): what one changes reaches the other's
local tier through pub/sub, exactly as between processes.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from seerrperf import CacheManager, ConfigurationError, NamedCache, RedisBackend, cached

from ._support import wait_until

KEY = ("movie", 603)


@pytest.fixture
def other(redis_url: str, namespace: str) -> Iterator[RedisBackend]:
    """A second member of the fleet, in the same namespace."""
    with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as made:
        yield made


@pytest.fixture
async def aother(redis_url: str, namespace: str) -> AsyncIterator[RedisBackend]:
    """``other``, used from the test's event loop (closed there)."""
    async with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as made:
        yield made


def subscribed(*backends: RedisBackend) -> None:
    """Wait until every backend receives invalidations and has resynced its caches once.

    A cache's first resync (when its backend subscribes) drops its local tier:
    a test that counts on local entries waits for it first.
    """
    wait_until(
        lambda: all(b.stats().subscribed and b.stats().resyncs >= 1 for b in backends),
        what="subscribed",
    )


def trips(backend: RedisBackend) -> int:
    return backend.stats().round_trips


def test_a_local_hit_costs_no_round_trip_a_shared_hit_one_a_miss_at_most_three(
    redis_url: str, namespace: str
) -> None:
    # Lease renewals (every lease_time / 3) never run here: the round trips are the test's.
    backend = RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0, lease_time=600)
    other = RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0, lease_time=600)
    with backend, other:
        _counts_round_trips(backend, other)


def _counts_round_trips(backend: RedisBackend, other: RedisBackend) -> None:
    for warming in (backend, other):
        warming.tier("warm").lookup("up")  # the scripts are loaded on first use
    ours = CacheManager(shared=backend).get_cache("tmdb")
    theirs = CacheManager(shared=other).get_cache("tmdb")
    subscribed(backend, other)
    before = trips(backend)
    assert ours.get_or_set(KEY, lambda: {"id": 603}) == {"id": 603}  # a miss: lookup + fill
    assert trips(backend) - before <= 3
    # The fill's invalidation reaches the other process (which holds nothing yet).
    wait_until(lambda: other.stats().invalidations_received == 1, what="the fill's message")
    before = trips(backend)
    for _ in range(100):
        assert ours.get_or_set(KEY, lambda: {"id": 0}) == {"id": 603}
        assert ours.get(KEY) == {"id": 603}
    assert trips(backend) == before  # local hits
    before = trips(other)
    assert theirs.get_or_set(KEY, lambda: {"id": 0}) == {"id": 603}  # a shared hit
    assert trips(other) - before == 1
    stats = theirs.stats()
    assert (stats.hits, stats.misses, stats.shared_hits, stats.loads) == (1, 0, 1, 0)
    assert theirs.get(KEY) == {"id": 603}  # kept locally now
    assert trips(other) - before == 1


def test_get_asks_the_shared_tier_after_a_local_miss(
    backend: RedisBackend, other: RedisBackend
) -> None:
    ours = NamedCache("tmdb", shared=backend.tier("tmdb"))
    theirs = NamedCache("tmdb", ttl=30, shared=other.tier("tmdb"))
    subscribed(backend, other)
    assert theirs.get(KEY, "absent") == "absent"
    ours.set(KEY, "value", ttl=600)
    wait_until(lambda: other.stats().invalidations_received == 1, what="the set's message")
    assert theirs.get(KEY) == "value"
    assert theirs.stats().shared_hits == 1
    before = trips(other)
    assert theirs.get(KEY) == "value"
    assert trips(other) == before


def test_set_delete_clear_and_flush_reach_the_other_process(
    backend: RedisBackend, other: RedisBackend
) -> None:
    ours = CacheManager(shared=backend)
    theirs = CacheManager(shared=other)
    a, b = ours.get_cache("tmdb"), theirs.get_cache("tmdb")
    subscribed(backend, other)
    a.set(KEY, "one")
    assert b.get(KEY) == "one"  # now held locally in b
    a.set(KEY, "two")
    wait_until(lambda: b.get(KEY) == "two", what="set reached b")
    a.delete(KEY)
    wait_until(lambda: KEY not in b, what="delete reached b")
    assert b.get(KEY, "gone") == "gone"
    a.set(KEY, "three")
    assert b.get(KEY) == "three"
    a.clear()
    wait_until(lambda: KEY not in b, what="clear reached b")
    a.set(KEY, "four")
    assert b.get(KEY) == "four"
    ours.flush()
    wait_until(lambda: KEY not in b, what="flush reached b")
    assert a.get(KEY, "flushed") == "flushed"


def test_delete_matching_deletes_the_known_keys_in_the_shared_tier(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=backend.tier("tmdb"))
    b = NamedCache("tmdb", shared=other.tier("tmdb"))
    subscribed(backend, other)
    for n in range(5):
        a.set(("movie", n), n)
    a.delete_matching(lambda key: isinstance(key, tuple) and key[1] % 2 == 0)
    assert [b.get(("movie", n), None) for n in range(5)] == [None, 1, None, 3, None]


def test_a_cached_function_is_shared_by_its_qualified_name(
    backend: RedisBackend, other: RedisBackend
) -> None:
    calls: list[int] = []

    def make(cache: NamedCache) -> Any:
        @cached(cache)
        def movie(movie_id: int) -> dict[str, int]:
            calls.append(movie_id)
            return {"id": movie_id}

        return movie

    first = make(NamedCache("fn", shared=backend.tier("fn")))
    second = make(NamedCache("fn", shared=other.tier("fn")))
    assert first(1) == second(1) == {"id": 1}
    assert calls == [1]
    subscribed(backend, other)
    first.invalidate(1)
    assert second(1) == {"id": 1}
    assert calls == [1, 1]


def test_keys_and_values_the_shared_tier_cannot_hold_stay_local_and_are_counted(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=backend.tier("tmdb"))
    b = NamedCache("tmdb", shared=other.tier("tmdb"))
    subscribed(backend, other)
    key = frozenset({1})  # no canonical encoding
    assert a.get_or_set(key, lambda: "local") == "local"
    assert a.get(key) == "local"
    a.set(KEY, (1, 2))  # JSON would read a tuple back as a list: refused
    assert a.get(KEY) == (1, 2)
    assert b.get(KEY, "absent") == "absent"
    assert a.stats().local_only == 2


def test_a_load_runs_once_for_threads_of_two_backends(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=backend.tier("tmdb"))
    b = NamedCache("tmdb", shared=other.tier("tmdb"))
    subscribed(backend, other)
    calls: list[int] = []
    release = threading.Event()

    def load() -> str:
        calls.append(1)
        release.wait(10)
        return "loaded"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda c=c: results.append(c.get_or_set(KEY, load)))
        for c in (a, b, a, b)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(calls) == 1, what="one load started")
    wait_until(
        lambda: backend.stats().lease_waits + other.stats().lease_waits >= 1,
        what="the other backend waits",
    )
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["loaded"] * 4
    assert calls == [1]


@pytest.mark.anyio
async def test_async_loads_run_once_and_share_the_key_space_with_sync(
    abackend: RedisBackend, aother: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=abackend.tier("tmdb"))
    b = NamedCache("tmdb", shared=aother.tier("tmdb"))
    calls: list[int] = []

    async def load() -> dict[str, int]:
        calls.append(1)
        await anyio.sleep(0.05)
        return {"id": 603}

    results: list[Any] = []

    async def ask(cache: NamedCache) -> None:
        results.append(await cache.aget_or_set(KEY, load))

    async with anyio.create_task_group() as tg:
        for cache in (a, b) * 10:
            tg.start_soon(ask, cache)
    assert results == [{"id": 603}] * 20
    assert calls == [1]
    assert b.get_or_set(KEY, lambda: {"id": 0}) == {"id": 603}  # sync reads it too


@pytest.mark.anyio
async def test_async_set_delete_and_clear_twins_reach_the_other_process(
    abackend: RedisBackend, aother: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=abackend.tier("tmdb"))
    b = NamedCache("tmdb", shared=aother.tier("tmdb"))
    subscribed(abackend, aother)
    await a.aset(KEY, "one")
    assert b.get(KEY) == "one"
    await a.adelete(KEY)
    wait_until(lambda: KEY not in b, what="adelete reached b")
    await a.aset(KEY, "two")
    assert b.get(KEY) == "two"
    await a.aclear()
    wait_until(lambda: KEY not in b, what="aclear reached b")


def _stale(backend: RedisBackend) -> None:
    """Store a shared entry of ``KEY`` that is stale at once (kept 600 s for stale reads)."""
    tier = backend.tier("tmdb")
    tier.set(KEY, "old", 0.001, stale_window=600)
    wait_until(lambda: tier.lookup(KEY, stale_while_revalidate=600).state == "stale", what="stale")


def test_a_stale_shared_value_is_served_while_one_background_thread_refreshes_it(
    backend: RedisBackend, other: RedisBackend
) -> None:
    _stale(other)
    cache = NamedCache("tmdb", shared=backend.tier("tmdb"))
    refreshed = threading.Event()

    def load() -> str:
        refreshed.set()
        return "new"

    assert cache.get_or_set(KEY, load, ttl=60, stale_while_revalidate=600) == "old"
    assert refreshed.wait(10)
    wait_until(lambda: cache.get(KEY) == "new", what="the refresh landed locally")
    assert other.tier("tmdb").lookup(KEY).value == "new"


@pytest.mark.anyio
async def test_an_async_stale_shared_value_is_refreshed_by_a_detached_task(
    abackend: RedisBackend, aother: RedisBackend
) -> None:
    _stale(aother)
    cache = NamedCache("tmdb", shared=abackend.tier("tmdb"))
    refreshed = anyio.Event()

    async def load() -> str:
        refreshed.set()
        return "new"

    assert await cache.aget_or_set(KEY, load, ttl=60, stale_while_revalidate=600) == "old"
    with anyio.fail_after(10):
        await refreshed.wait()
    await anyio.to_thread.run_sync(
        lambda: wait_until(lambda: cache.get(KEY) == "new", what="the refresh landed locally")
    )
    assert (await aother.tier("tmdb").alookup(KEY)).value == "new"


def test_an_invalidation_during_a_shared_read_keeps_it_out_of_the_local_tier(
    backend: RedisBackend, other: RedisBackend
) -> None:
    a = NamedCache("tmdb", shared=backend.tier("tmdb"))
    b = NamedCache("tmdb", shared=other.tier("tmdb"))
    subscribed(backend, other)
    a.set(KEY, "old")
    started, go_on = threading.Event(), threading.Event()

    def slow_load() -> str:  # b's load runs; meanwhile a deletes the key
        started.set()
        go_on.wait(10)
        return "loaded before the delete"

    b.delete(KEY)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(b.get_or_set(KEY, slow_load)))
    thread.start()
    assert started.wait(10)
    received = other.stats().invalidations_received
    a.delete(KEY)
    wait_until(lambda: other.stats().invalidations_received > received, what="b heard it")
    go_on.set()
    thread.join(10)
    assert result == ["loaded before the delete"]  # its caller still gets it...
    assert KEY not in b  # ...but it is not kept, locally or shared
    assert b.shared is not None
    assert b.shared.lookup(KEY).state == "missing"


def test_a_cache_without_a_shared_tier_makes_no_round_trip(backend: RedisBackend) -> None:
    cache = NamedCache("tmdb")
    assert cache.shared is None
    cache.set(KEY, 1)
    cache.delete(KEY)
    assert cache.get_or_set(KEY, lambda: 2) == 2
    assert backend.stats().round_trips == 0


def test_close_detaches_the_shared_tier(backend: RedisBackend) -> None:
    manager = CacheManager(shared=backend)
    cache = manager.get_cache("tmdb")
    attached = cache.shared
    manager.close()
    assert attached is not None
    assert cache.shared is None
    before = trips(backend)
    cache.set(KEY, 1)
    assert trips(backend) == before


def test_shared_must_be_a_backend_or_a_tier() -> None:
    with pytest.raises(ConfigurationError, match="shared must be a RedisBackend"):
        CacheManager(shared="redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="shared must be a SharedTier"):
        NamedCache("tmdb", shared=object())  # type: ignore[arg-type]
