"""The TMDB clients with ``rate_limiter=``: a fleet-wide limiter on real Valkey."""

from __future__ import annotations

import time

import httpx
import pytest

from seerrperf import AsyncTmdbClient, ConfigurationError, RedisBackend, TmdbClient
from seerrperf.testing import FakeTmdb

KEY = "k"


def test_the_sync_client_reserves_every_upstream_call_from_the_fleets_limiter(
    backend: RedisBackend,
) -> None:
    limiter = backend.rate_limiter("tmdb", max_rps=1000)
    fake = FakeTmdb(api_key=KEY)
    with (
        fake.serve_in_thread() as base_url,
        TmdbClient(api_key=KEY, base_url=base_url, rate_limiter=limiter, max_rps=0.001) as tmdb,
    ):
        limiter.reserve()  # the scripts are loaded on first use
        before = backend.stats().round_trips
        for movie in range(1, 6):
            assert tmdb.get_movie(movie)["id"] == movie
        # One reservation per upstream call; max_rps=0.001 would have waited 1000 s.
        assert backend.stats().round_trips - before == 5
        assert fake.stats().total_requests == 5


def test_a_429_pauses_the_other_process_too(backend: RedisBackend, redis_url: str) -> None:
    limiter = backend.rate_limiter("tmdb", max_rps=1000)
    fake = FakeTmdb(api_key=KEY, throttle=1, retry_after=1)
    with (
        RedisBackend.from_url(redis_url, namespace=backend.namespace, timeout=5.0) as other,
        fake.serve_in_thread() as base_url,
        TmdbClient(api_key=KEY, base_url=base_url, rate_limiter=limiter) as tmdb,
    ):
        began = time.monotonic()
        assert tmdb.get_movie(603)["id"] == 603  # 429, the fleet's pause, then the answer
        assert time.monotonic() - began >= 0.9
        assert fake.stats().responses_by_status[429] == 1
        # The pause was the fleet's: another process's next slot waits for its end too.
        stopped = began + 1.0 - time.monotonic()
        if stopped > 0.1:  # the pause is not over yet for a process that asks now
            assert other.rate_limiter("tmdb", max_rps=1000).reserve() >= stopped - 0.1


@pytest.mark.anyio
async def test_the_async_client_awaits_the_limiter_and_a_429_pauses_the_fleet(
    abackend: RedisBackend, redis_url: str
) -> None:
    limiter = abackend.rate_limiter("tmdb", max_rps=1000)
    fake = FakeTmdb(api_key=KEY, throttle=1, retry_after=2)
    http = httpx.AsyncClient(transport=fake.transport())
    async with AsyncTmdbClient(api_key=KEY, http_client=http, rate_limiter=limiter) as tmdb:
        await limiter.areserve()  # the scripts are loaded on first use
        before = abackend.stats().round_trips
        began = time.monotonic()
        assert (await tmdb.get_movie(603))["id"] == 603
        # The 429's Retry-After was stored for the fleet (apause): another
        # process reserving now waits for what is left of it.
        with RedisBackend.from_url(redis_url, namespace=abackend.namespace) as other:
            left = other.rate_limiter("tmdb", max_rps=1000).reserve()
        assert time.monotonic() - began >= 1.9
        assert 0 <= left < 0.2  # asked after the pause, which is over
        # reserve, 429, apause, reserve again: 3 round trips, none on the loop's thread.
        assert abackend.stats().round_trips - before == 3
    await http.aclose()


def test_a_rate_limiter_must_have_the_limiters_face() -> None:
    with pytest.raises(ConfigurationError, match="rate_limiter must have"):
        TmdbClient(api_key=KEY, rate_limiter=object())  # type: ignore[arg-type]
