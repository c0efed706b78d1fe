"""Tests for ``@cached``: sync and async functions, keys, invalidation, clearing."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from seerrperf import ConfigurationError, NamedCache, cached
from seerrperf.testing import FakeClock

from ._twins import Api, twins


@twins
@pytest.mark.anyio
async def test_cached_function_caches_invalidates_and_clears_its_own_entries(
    api: Api, clock: FakeClock
) -> None:
    cache = NamedCache("queries", clock=clock)
    calls: list[tuple[Any, ...]] = []

    def recent_requests(user: int, *, limit: int = 10) -> list[int] | None:
        """Docstring kept."""
        calls.append((user, limit))
        return None if user == 0 else [user] * limit

    def other(x: int) -> int:
        return x

    recent = api.cached(cache, recent_requests, ttl=60)
    other_cached = api.cached(cache, other)
    assert inspect.iscoroutinefunction(recent) is (api.kind == "async")
    assert recent.__name__ == "recent_requests"
    assert recent.__doc__ == "Docstring kept."
    assert await api.call(recent, 1, limit=2) == [1, 1]
    assert await api.call(recent, 1, limit=2) == [1, 1]
    assert await api.call(recent, 0) is None
    assert await api.call(recent, 0) is None  # None is cached too
    assert calls == [(1, 2), (0, 10)]
    recent.invalidate(1, limit=2)
    await api.call(recent, 1, limit=2)
    assert calls[-1] == (1, 2)
    assert len(calls) == 3
    await api.call(other_cached, 5)
    recent.cache_clear()
    assert len(cache) == 1  # only other()'s entry is left
    await api.call(recent, 0)
    assert len(calls) == 4
    clock.advance(60)
    await api.call(recent, 0)
    assert len(calls) == 5  # its ttl, not the cache's 300 s


@twins
@pytest.mark.anyio
async def test_cached_custom_key_and_same_named_closures(api: Api, clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)

    def make(offset: int) -> Any:
        def add(x: int) -> int:
            return x + offset

        return api.cached(cache, add)

    assert await api.call(make(1), 1) == 2
    assert await api.call(make(10), 1) == 11  # same qualname, separate entries

    def movie(client: object, movie_id: int) -> str:
        return f"movie {movie_id}"

    by_id = api.cached(cache, movie, key=lambda client, movie_id: movie_id)
    assert await api.call(by_id, object(), 7) == "movie 7"
    assert await api.call(by_id, object(), 7) == "movie 7"  # another client, same key
    assert cache.stats().hits == 1


@pytest.mark.anyio
async def test_cached_async_function_shares_one_call(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    release = anyio.Event()
    calls = 0

    @cached(cache)
    async def fetch(movie_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"id": movie_id}

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


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: cached(NamedCache("t"), ttl=-1), "ttl"),
        (lambda: cached(NamedCache("t"), ttl=float("inf")), "ttl"),
        (lambda: cached(NamedCache("t"), key="id"), "key"),  # type: ignore[arg-type]
        (lambda: cached(object()), "cache"),  # type: ignore[arg-type]
        (lambda: cached(NamedCache("t"))(42), "fn"),  # type: ignore[arg-type]
    ],
)
def test_invalid_cached_arguments_raise_configuration_error(
    build: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        build()
