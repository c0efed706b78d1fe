"""Scaffolding for the cache tests: sync/async twins written once, threads, probes."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest

from seerrperf import NamedCache, cached
from seerrperf._cache.flight import THREADS, SingleFlight
from seerrperf._cache.store import Store
from seerrperf.testing import FakeClock

_T = TypeVar("_T")

MISSING = object()

twins = pytest.mark.parametrize(
    ("api", "anyio_backend"),
    [
        pytest.param("sync", "asyncio", id="sync"),
        pytest.param("async", "asyncio", id="asyncio"),
        pytest.param("async", "trio", id="trio"),
    ],
    indirect=["api"],
)
"""Run a test once through ``get_or_set`` (threads) and once per backend through ``aget_or_set``.

The sync twin runs inside the asyncio test loop only because the test body is
async; its loaders are plain functions and never wait on the loop.
"""


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


class Api:
    """One of a cache's two loading APIs: ``"sync"`` (get_or_set) or ``"async"`` (aget_or_set).

    Loaders are written once as plain functions; the async twin wraps them in
    a coroutine function.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.crowd = 20 if kind == "sync" else 1_000  # concurrent callers: threads or tasks

    def __repr__(self) -> str:
        return self.kind

    async def get_or_set(
        self, cache: NamedCache, key: Hashable, produce: Callable[[], _T], ttl: float | None = None
    ) -> _T:
        if self.kind == "sync":
            return cache.get_or_set(key, produce, ttl)

        async def loader() -> _T:
            return produce()

        return await cache.aget_or_set(key, loader, ttl)

    def cached(self, cache: NamedCache, fn: Callable[..., Any], **options: Any) -> Any:
        """``@cached(cache, **options)`` applied to ``fn``, or to an async twin of it."""
        if self.kind == "sync":
            return cached(cache, **options)(fn)

        @functools.wraps(fn)  # the name and docstring; still a coroutine function
        async def twin(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return cached(cache, **options)(twin)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a function made by :meth:`cached`, awaiting the async twin."""
        result = fn(*args, **kwargs)
        return await result if self.kind == "async" else result

    async def crowd_misses(
        self, cache: ObservedCache, key: Hashable, finish: Callable[[], Any]
    ) -> tuple[list[Any], int]:
        """Let ``self.crowd`` callers miss ``key`` at once.

        The loader ends with ``finish()`` (a value, or raising) only once every
        caller has joined it. Returns each caller's result or exception, and
        how many times the loader ran.
        """
        calls = 0
        if self.kind == "sync":

            def loader() -> Any:
                nonlocal calls
                calls += 1
                for _ in range(self.crowd):  # every thread has missed, so all wait for this run
                    assert cache.missed.acquire(timeout=10)
                return finish()

            return run_threads(self.crowd, lambda: cache.get_or_set(key, loader)), calls

        release = anyio.Event()

        async def aloader() -> Any:
            nonlocal calls
            calls += 1
            await release.wait()
            return finish()

        results: list[Any] = [None] * self.crowd

        async def caller(index: int) -> None:
            try:
                results[index] = await cache.aget_or_set(key, aloader)
            except Exception as exc:  # recorded for the test to assert on
                results[index] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for index in range(self.crowd):
                    tg.start_soon(caller, index)
                await anyio.wait_all_tasks_blocked()
                release.set()
        return results, calls


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


_PROBE = object()


def lock_is_free(cache: NamedCache) -> bool:
    """Whether another thread can use ``cache`` at once (a lock left held would block it).

    The probe (``in`` with an absent key) takes the lock and never reads the
    clock, so it also works while a test's clock is failing.
    """
    done = threading.Event()

    def probe() -> None:
        assert _PROBE not in cache
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    return done.wait(timeout=10)


REFRESH_THREAD = "seerrperf-cache-refresh"
"""How the name of a thread running a sync stale-while-revalidate refresh begins."""


def join_refreshes(timeout: float = 10) -> None:
    """Wait (with a deadline) for every sync refresh thread to end."""
    for thread in threading.enumerate():
        if thread.name.startswith(REFRESH_THREAD):
            thread.join(timeout)
            assert not thread.is_alive()


class Machine:
    """A SingleFlight on its own store, recording how it recounts lookups."""

    def __init__(self, clock: FakeClock) -> None:
        self.store = Store(10, clock)
        self.recounts: list[bool] = []
        self.lock = threading.Lock()
        self.flights = SingleFlight("t", self.lock, self.store, 100, self.recounts.append)

    def begin(
        self, key: str = "k", owner: object = THREADS, swr: float = 0.0, timeout: float = 30.0
    ) -> Any:
        return self.flights.begin(key, owner, 10.0, swr, timeout, threading.Event)
