"""RedisRateLimiter: one budget for several real processes, a pause every process honours,
the Throttle's face, and a local limit while Redis is away."""

from __future__ import annotations

import bisect
import inspect
import multiprocessing
import time
from typing import Any

import pytest

from seerrperf import ConfigurationError, RedisBackend, RedisRateLimiter
from seerrperf._tmdb.transport import Throttle
from seerrperf.testing import EmbeddedRedis, FakeClock

from . import _workers
from ._support import wait_until

CTX = multiprocessing.get_context("spawn")


def busiest_window(slots: list[float], seconds: float = 1.0) -> int:
    """The most slots in any half-open window of ``seconds``."""
    ordered = sorted(slots)
    return max(
        (bisect.bisect_left(ordered, start + seconds) - i for i, start in enumerate(ordered)),
        default=0,
    )


def test_it_has_the_throttles_face() -> None:
    for name in ("pause_left", "pause", "reserve"):
        ours = inspect.signature(getattr(RedisRateLimiter, name))
        theirs = inspect.signature(getattr(Throttle, name))
        assert list(ours.parameters) == list(theirs.parameters)
    for name in ("apause", "areserve"):
        assert inspect.iscoroutinefunction(getattr(RedisRateLimiter, name))


def test_bad_arguments_are_named(backend: RedisBackend) -> None:
    with pytest.raises(ConfigurationError, match="max_rps"):
        backend.rate_limiter("tmdb", max_rps=0)
    with pytest.raises(ConfigurationError, match="margin"):
        backend.rate_limiter("tmdb", max_rps=10, margin=2)
    with pytest.raises(ConfigurationError, match="expected_workers"):
        backend.rate_limiter("tmdb", max_rps=10, expected_workers=0)
    with pytest.raises(ConfigurationError, match="name"):
        backend.rate_limiter("", max_rps=10)
    with pytest.raises(ConfigurationError, match="seconds"):
        backend.rate_limiter("tmdb", max_rps=10).pause(-1)


def _reserve_timed(limiter: RedisRateLimiter) -> tuple[float, float, float]:
    """``(before, wait, after)``: the slot lies in ``[before + wait, after + wait]``."""
    before = time.monotonic()
    wait = limiter.reserve()
    return before, wait, time.monotonic()


def test_reservations_are_spaced_on_the_servers_clock(backend: RedisBackend) -> None:
    backend.rate_limiter("warm-up", max_rps=10).reserve()  # the server learns the scripts
    limiter = backend.rate_limiter("tmdb", max_rps=10, margin=0.0)
    before = backend.stats().round_trips
    calls = [_reserve_timed(limiter) for _ in range(5)]
    first_before, first_wait, _ = calls[0]
    assert first_wait == 0.0  # a fresh limit starts at once
    for index, (_, wait, after) in enumerate(calls):
        assert 0.0 <= wait <= index * 0.1 + 1e-6
        # The slot is at least index slots after the first one, however slow the calls were.
        assert (after + wait) - (first_before + first_wait) >= index * 0.1 - 1e-3
    stats = backend.stats()
    assert stats.round_trips - before == 5  # one per reservation
    assert stats.limiter_wait_seconds == pytest.approx(sum(wait for _, wait, _ in calls))


def test_limiters_of_one_name_share_the_budget_others_do_not(
    backend: RedisBackend, redis_url: str
) -> None:
    with RedisBackend.from_url(redis_url, namespace=backend.namespace) as other:
        ours = backend.rate_limiter("tmdb", max_rps=10, margin=0.0)
        theirs = other.rate_limiter("tmdb", max_rps=10, margin=0.0)
        first_before, first_wait, _ = _reserve_timed(ours)
        _, wait, after = _reserve_timed(theirs)
        assert wait <= 0.1 + 1e-6
        assert (after + wait) - (first_before + first_wait) >= 0.1 - 1e-3  # the next slot
        assert other.rate_limiter("tvdb", max_rps=10).reserve() == 0.0  # another budget


def test_a_pause_reaches_every_limiter_of_the_name(backend: RedisBackend, redis_url: str) -> None:
    with RedisBackend.from_url(redis_url, namespace=backend.namespace) as other:
        ours = backend.rate_limiter("tmdb", max_rps=100)
        theirs = other.rate_limiter("tmdb", max_rps=100)
        asked = time.monotonic()
        ours.pause(2.0)
        assert 0 < ours.pause_left() <= 2.0  # known here at once
        assert theirs.pause_left() == 0.0  # not known there before it asks...
        _, wait, after = _reserve_timed(theirs)
        assert wait <= 2.0
        assert after + wait >= asked + 2.0 - 1e-3  # ...and its next start waits it out
        assert 0 < theirs.pause_left() <= 2.0
        ours.pause(0.5)  # a shorter pause does not shorten the longer one
        _, wait, after = _reserve_timed(theirs)
        assert after + wait >= asked + 2.0 - 1e-3


@pytest.mark.anyio
async def test_async_twins(abackend: RedisBackend) -> None:
    limiter = abackend.rate_limiter("tmdb", max_rps=10, margin=0.0)
    first = time.monotonic()
    assert await limiter.areserve() < 0.05
    wait = await limiter.areserve()
    assert wait <= 0.1
    assert time.monotonic() + wait >= first + 0.1 - 1e-3
    asked = time.monotonic()
    await limiter.apause(1.0)
    wait = await limiter.areserve()
    assert wait <= 1.0
    assert time.monotonic() + wait >= asked + 1.0 - 1e-3


def test_while_redis_is_away_each_process_keeps_its_share() -> None:
    server = EmbeddedRedis()  # never started: every call falls back
    clock = FakeClock()
    try:
        with RedisBackend.from_url(
            server.url, timeout=0.1, expected_workers=4, clock=clock
        ) as backend:
            limiter = backend.rate_limiter("tmdb", max_rps=20)
            assert limiter.local_rps == 5.0
            assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.2, 0.4])
            limiter.pause(3.0)
            assert limiter.pause_left() == pytest.approx(3.0)
            clock.advance(1.0)
            assert limiter.pause_left() == pytest.approx(2.0)
            assert backend.stats().fallbacks >= 4
            per_call = backend.rate_limiter("tmdb", max_rps=20, expected_workers=2)
            assert per_call.local_rps == 10.0
    finally:
        server.close()


# -- four real processes -------------------------------------------------------------------


def _run_workers(
    redis_url: str, namespace: str, limit: int, during: Any = None
) -> list[tuple[str, list[tuple[float, float]], dict[str, Any]]]:
    start = CTX.Barrier(_workers.PROCESSES)
    stop = CTX.Event()
    started = CTX.Value("i", 0)
    queue = CTX.Queue()
    processes = [
        CTX.Process(
            target=_workers.reserve_starts,
            args=(redis_url, namespace, 20, start, stop, limit, started, queue),
        )
        for _ in range(_workers.PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        if during is not None:
            during(started, stop)
        results = [queue.get(timeout=120) for _ in processes]
    finally:
        stop.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [r[0] for r in results] == ["done"] * len(processes), results
    return results


@pytest.mark.slow
def test_four_processes_share_max_rps_and_every_one_honours_a_pause(
    redis_url: str, namespace: str
) -> None:
    paused: dict[str, float] = {}

    def pause_midway(started: Any, stop: Any) -> None:
        wait_until(lambda: started.value >= 40, timeout=60, what="40 starts")
        with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as backend:
            paused["asked"] = time.monotonic()
            backend.rate_limiter("tmdb", max_rps=20).pause(2.0)
            paused["done"] = time.monotonic()
        stop.wait(2.6)  # the workload runs on just past the pause, then stops
        stop.set()

    results = _run_workers(redis_url, namespace, limit=10_000, during=pause_midway)
    slots = [slot for _, starts, _ in results for _, slot in starts]
    # One budget for the fleet: no second holds more than max_rps starts, pause or not...
    assert busiest_window(slots) <= 20
    before = sorted(slot for slot in slots if slot < paused["asked"])
    assert len(before) >= 40
    assert before[-1] - before[0] >= (len(before) - 1) / 20  # ...not 4 x max_rps
    assert sum(stats["fallbacks"] for *_, stats in results) == 0
    # A pause set by another process stops each of the four for its 2 s.
    for _, starts, _ in results:
        after = [slot for began, slot in starts if began > paused["done"]]
        assert after, "every process started again after the pause"
        assert min(after) >= paused["asked"] + 2.0 - 1e-3
        assert any(began < paused["asked"] for began, _ in starts)
