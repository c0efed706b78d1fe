"""``SeerrperfCache`` under concurrency: atomic add and incr, single-flight get_or_set, async.

Threads take their backend the way Django code does, ``caches[alias]`` (one
object per thread), from Django's own ``CacheHandler``; they all reach one
NamedCache per LOCATION. Races are made likely with a tiny interpreter
switch interval, and the harness is shown to catch a non-atomic ``add``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from seerrperf.django.cache import SeerrperfCache
from seerrperf.testing import FakeClock

from ._cache_settings import caches_setting, handler

THREADS = 16
ROUNDS = 30
JOIN_DEADLINE = 30.0


@pytest.fixture
def caches() -> Any:
    return handler(caches_setting(FakeClock()))


@pytest.fixture
def racy() -> Iterator[None]:
    """Switch threads every 10 microseconds: a check-then-set gap is then hit often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def in_threads(count: int, body: Callable[[int], Any]) -> list[Any]:
    """Run ``body(i)`` in ``count`` threads released together; return results or exceptions."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            start.wait(JOIN_DEADLINE)
            results[index] = body(index)
        except BaseException as exc:  # recorded for the test to assert on
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_DEADLINE)
        assert not thread.is_alive()
    return results


def _rounds_with_not_one_winner(caches: Any, add: Callable[[Any, str, int], bool]) -> int:
    """Race ``add(backend, key, index)`` in ``THREADS`` threads, ``ROUNDS`` times; count bad rounds.

    Each thread takes its backend (``caches["default"]``) before the start,
    so that the calls race, not the setup.
    """
    bad = 0
    for round_ in range(ROUNDS):
        key = f"race-{round_}"
        start = threading.Barrier(THREADS)
        won: list[Any] = [None] * THREADS

        def run(index: int, key: str, start: threading.Barrier, won: list[Any]) -> None:
            backend = caches["default"]
            start.wait(JOIN_DEADLINE)
            won[index] = add(backend, key, index)

        threads = [threading.Thread(target=run, args=(i, key, start, won)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_DEADLINE)
            assert not thread.is_alive()
        winners = [i for i, result in enumerate(won) if result is True]
        if len(winners) != 1 or caches["default"].get(key) != winners[0]:
            bad += 1
    return bad


def test_threads_racing_add_on_one_key_have_exactly_one_winner(caches: Any, racy: None) -> None:
    def add(cache: SeerrperfCache, key: str, value: int) -> bool:
        return cache.add(key, value)

    assert _rounds_with_not_one_winner(caches, add) == 0


def test_the_race_harness_catches_a_check_then_set_add(caches: Any, racy: None) -> None:
    # The bug the issue reports in a hand-written backend: has_key() then set().
    def naive_add(cache: SeerrperfCache, key: str, value: int) -> bool:
        if cache.has_key(key):
            return False
        cache.set(key, value)
        return True

    assert _rounds_with_not_one_winner(caches, naive_add) > 0


def test_each_thread_has_its_own_backend_and_all_share_one_cache(caches: Any) -> None:
    backends = in_threads(THREADS, lambda _: caches["default"])
    assert len({id(backend) for backend in backends}) == THREADS  # Django: one per thread
    assert len({id(backend.named_cache) for backend in backends}) == 1
    assert backends[0].named_cache is caches["default"].named_cache


def test_concurrent_incr_loses_no_increment(caches: Any, racy: None) -> None:
    caches["default"].set("counter", 0)

    def bump(_: int) -> None:
        cache = caches["default"]
        for _ in range(200):
            cache.incr("counter")

    assert in_threads(THREADS, bump) == [None] * THREADS
    assert caches["default"].get("counter") == THREADS * 200


def test_get_or_set_in_16_threads_calls_the_loader_once(caches: Any) -> None:
    started = threading.Semaphore(0)
    calls: list[int] = []

    def loader() -> dict[str, int]:
        calls.append(threading.get_ident())
        for _ in range(THREADS):  # every thread has at least reached its get_or_set call
            assert started.acquire(timeout=JOIN_DEADLINE)
        return {"id": 7}

    def call(_: int) -> Any:
        cache = caches["default"]
        started.release()
        return cache.get_or_set("movie:7", loader, timeout=60)

    results = in_threads(THREADS, call)
    assert len(calls) == 1
    assert results == [{"id": 7}] * THREADS
    assert len({id(result) for result in results}) == THREADS  # each thread its own copy
    stats = caches["default"].stats()
    assert stats.loads == 1
    assert stats.coalesced + stats.hits == THREADS - 1


def test_get_or_set_shares_one_failure_and_caches_nothing(caches: Any) -> None:
    started = threading.Semaphore(0)
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        for _ in range(THREADS):
            assert started.acquire(timeout=JOIN_DEADLINE)
        raise LookupError("upstream down")

    def call(_: int) -> Any:
        cache = caches["default"]
        started.release()
        return cache.get_or_set("k", loader)

    results = in_threads(THREADS, call)
    # The threads that joined the load get its exception; any thread that only
    # arrived after it failed starts (and fails) a load of its own.
    assert all(isinstance(result, LookupError) for result in results)
    assert len(calls) == caches["default"].stats().loads
    assert caches["default"].has_key("k") is False


# -- async ----------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_aget_or_set_in_16_tasks_calls_the_loader_once(caches: Any) -> None:
    cache: SeerrperfCache = caches["default"]
    release = anyio.Event()
    calls: list[int] = []
    results: list[Any] = []

    async def loader() -> dict[str, int]:
        calls.append(1)
        await release.wait()
        return {"id": 7}

    async def call() -> None:
        results.append(await cache.aget_or_set("movie:7", loader, timeout=60))

    async with anyio.create_task_group() as tasks:
        for _ in range(THREADS):
            tasks.start_soon(call)
        await anyio.wait_all_tasks_blocked()  # all 16 are waiting for the one load
        release.set()
    assert len(calls) == 1
    assert results == [{"id": 7}] * THREADS
    assert len({id(result) for result in results}) == THREADS
    assert cache.stats().coalesced == THREADS - 1


@pytest.mark.anyio
async def test_aget_or_set_takes_a_value_a_function_or_an_async_function(caches: Any) -> None:
    cache: SeerrperfCache = caches["default"]

    async def fetch() -> str:
        await anyio.lowlevel.checkpoint()
        return "async"

    assert await cache.aget_or_set("value", 1) == 1
    assert await cache.aget_or_set("function", lambda: "sync") == "sync"
    assert await cache.aget_or_set("async", fetch) == "async"
    assert await cache.aget_or_set("none", None) is None
    assert await cache.aget("none", "default") is None  # None was stored
    assert await cache.aget_or_set("value", 2) == 1  # a hit: the default is not used


@pytest.mark.anyio
async def test_the_async_api_answers_like_the_sync_one(caches: Any) -> None:
    cache: SeerrperfCache = caches["default"]
    v2: SeerrperfCache = caches["v2"]
    await cache.aset("key", "value")
    assert await cache.aget("key") == "value"
    assert await cache.aget("missing", "bang!") == "bang!"
    assert await cache.aadd("key", "other") is False
    assert await cache.aadd("added", None) is True
    assert await cache.ahas_key("added") is True
    assert await cache.aset_many({"a": 1, "b": 2}) == []
    assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert await cache.aincr("a", 10) == 11
    assert await cache.adecr("a") == 10
    with pytest.raises(ValueError, match="not found"):
        await cache.aincr("missing")
    assert await cache.atouch("a", 0) is True
    assert await cache.ahas_key("a") is False
    assert await cache.adelete("b") is True
    assert await cache.adelete("b") is False
    await cache.adelete_many(["key", "added"])
    assert await cache.aget_many(["key", "added"]) == {}
    await cache.aset("versioned", 42)
    assert await cache.aincr_version("versioned") == 2
    assert await v2.aget("versioned") == 42
    assert await v2.adecr_version("versioned") == 1
    assert await cache.aget("versioned") == 42
    await cache.aclear()
    assert await cache.aget("versioned") is None
    await cache.aclose()


@pytest.mark.anyio
async def test_the_async_methods_run_on_the_event_loop_not_in_a_thread() -> None:
    # Django's BaseCache wraps the sync methods in sync_to_async, a hop to
    # another thread; these need none (no I/O, the lock is held for microseconds).
    seen: list[int] = []

    def key_func(key: Any, key_prefix: str, version: Any) -> str:
        seen.append(threading.get_ident())
        return f"{key_prefix}:{version}:{key}"

    setting = caches_setting(FakeClock())
    setting["default"]["KEY_FUNCTION"] = key_func
    cache: SeerrperfCache = handler(setting)["default"]
    await cache.aset("a", 1)
    await cache.aget("a")
    await cache.aadd("b", 2)
    await cache.aincr("a")
    await cache.atouch("a")
    await cache.ahas_key("a")
    await cache.aget_many(["a", "b"])
    await cache.aset_many({"c": 3})
    await cache.adelete("c")
    await cache.adelete_many(["b"])
    await cache.aget_or_set("d", 4)
    assert len(seen) == 12
    assert set(seen) == {threading.get_ident()}
