"""Several real processes on one Valkey: fleet-wide single-flight, takeover, stale refreshes,
invalidations, and the subscription's resync (multiprocessing, spawn)."""

from __future__ import annotations

import bisect
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
import redis

from seerrperf import CacheManager, RedisBackend
from seerrperf.testing import EmbeddedRedis, FakeTmdb

from . import _workers
from ._support import wait_until

pytestmark = pytest.mark.slow

CTX = multiprocessing.get_context("spawn")


def _results(queue: Any, count: int, timeout: float = 180) -> list[Any]:
    return [queue.get(timeout=timeout) for _ in range(count)]


def _join(processes: list[Any]) -> None:
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)


def test_four_processes_of_fifty_tasks_load_each_key_once(redis_url: str, namespace: str) -> None:
    # Two processes of threads (sync), two of asyncio tasks: one key space.
    start = CTX.Barrier(_workers.PROCESSES)
    loader_calls = CTX.Value("i", 0)
    queue = CTX.Queue()
    modes = ["threads", "asyncio", "threads", "asyncio"]
    processes = [
        CTX.Process(
            target=_workers.load_keys,
            args=(redis_url, namespace, mode, seed, start, loader_calls, queue),
        )
        for seed, mode in enumerate(modes)
    ]
    for process in processes:
        process.start()
    try:
        results = _results(queue, len(processes))
    finally:
        _join(processes)
    assert [r[0] for r in results] == ["done"] * 4, results
    assert all(not wrong for *_, wrong in results), results
    stats = [r[2] for r in results]
    assert sum(s["fallbacks"] for s in stats) == 0
    assert sum(s["errors"] for s in stats) == 0
    assert loader_calls.value == _workers.KEYS  # 20 000 asks, 100 loads
    assert sum(s["loads"] for s in stats) == _workers.KEYS
    assert sum(s["lease_waits"] for s in stats) > 0  # they did run into each other


def test_a_killed_lease_holder_is_taken_over_within_the_lease_time(
    redis_url: str, namespace: str
) -> None:
    lease_time = 1.0
    started = CTX.Event()
    queue = CTX.Queue()
    holder = CTX.Process(
        target=_workers.hold_a_lease, args=(redis_url, namespace, lease_time, started, queue)
    )
    holder.start()
    try:
        assert started.wait(60), queue.get_nowait() if not queue.empty() else "never started"
        with RedisBackend.from_url(
            redis_url, namespace=namespace, timeout=5.0, lease_time=lease_time
        ) as backend:
            loaded_at: list[float] = []

            def take_over() -> str:
                loaded_at.append(time.monotonic())
                return "taken over"

            results: list[Any] = []
            waiter = threading.Thread(
                target=lambda: results.append(
                    backend.tier("tmdb").get_or_load(("movie", 603), take_over, ttl=60)
                )
            )
            waiter.start()
            wait_until(lambda: backend.stats().lease_waits == 1, what="the waiter waits")
            # The holder lives on for twice its lease time: its renewals keep the lease.
            waiter.join(2 * lease_time)
            assert waiter.is_alive()
            assert not loaded_at
            killed_at = time.monotonic()
            os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
            waiter.join(30)
        assert loaded_at, results
        assert loaded_at[0] - killed_at <= lease_time + 1.0
        assert results[0].value == "taken over"
        assert backend.stats().takeovers == 1
    finally:
        _join([holder])


def test_one_refresh_per_stale_key_across_the_fleet(
    redis_url: str, namespace: str, raw: redis.Redis
) -> None:
    keys = 10
    with RedisBackend.from_url(redis_url, namespace=namespace) as backend:
        tier = backend.tier("tmdb")
        for key in range(keys):
            tier.set(("movie", key), f"old {key}", 0.001, stale_window=600)
        wait_until(
            lambda: all(
                tier.lookup(("movie", k), stale_while_revalidate=600).state == "stale"
                for k in range(keys)
            ),
            what="the entries went stale",
        )
    start = CTX.Barrier(_workers.PROCESSES)
    refreshes = CTX.Value("i", 0)
    queue = CTX.Queue()
    processes = [
        CTX.Process(
            target=_workers.refresh_stale,
            args=(redis_url, namespace, keys, start, refreshes, queue),
        )
        for _ in range(_workers.PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        results = _results(queue, len(processes))
    finally:
        _join(processes)
    assert [r[0] for r in results] == ["done"] * 4, results
    assert refreshes.value == keys  # 4 processes x 8 threads x 3 rounds, one refresh per key
    assert all(set(r[1]) <= {"stale", "shared"} for r in results)  # never a blocking miss
    with RedisBackend.from_url(redis_url, namespace=namespace) as backend:
        assert backend.tier("tmdb").lookup(("movie", 3)).value == "new 3"


def test_an_invalidation_reaches_another_process(redis_url: str, namespace: str) -> None:
    ready = CTX.Event()
    queue = CTX.Queue()
    listener = CTX.Process(target=_workers.listen, args=(redis_url, namespace, ready, queue))
    listener.start()
    try:
        assert ready.wait(60)
        assert queue.get(timeout=10)[0] == "resync"
        with RedisBackend.from_url(redis_url, namespace=namespace) as backend:
            tier = backend.tier("tmdb")
            sent = time.monotonic()
            tier.delete(("movie", 603))
            kind, digests, heard_at = queue.get(timeout=10)
            assert (kind, digests) == ("keys", (tier.digest(("movie", 603)),))
            assert heard_at - sent < 5.0  # delivered (latency is measured in benchmarks)
    finally:
        listener.kill()
        _join([listener])


def test_a_killed_subscription_resyncs_when_it_is_back(running_redis: EmbeddedRedis) -> None:
    url = running_redis.url
    namespace = "killed-subscription"
    ready = CTX.Event()
    queue = CTX.Queue()
    listener = CTX.Process(target=_workers.listen, args=(url, namespace, ready, queue))
    listener.start()
    try:
        assert ready.wait(60)
        assert queue.get(timeout=10)[0] == "resync"
        with (
            RedisBackend.from_url(url, namespace=namespace) as backend,
            redis.Redis.from_url(url) as raw,
        ):
            tier = backend.tier("tmdb")
            killed = raw.client_kill_filter(_type="pubsub")
            assert killed >= 1
            tier.delete(("movie", 1))  # published while the listener is not subscribed
            # The listener resyncs when it notices the loss, and again once it is
            # subscribed again: whatever it missed in between is dropped.
            heard: list[Any] = []
            while sum(kind == "resync" for kind, *_ in heard) < 2:
                heard.append(queue.get(timeout=10))
            # After the resync, messages arrive again.
            tier.delete(("movie", 2))
            while heard[-1][:2] != ("keys", (tier.digest(("movie", 2)),)):
                heard.append(queue.get(timeout=10))
    finally:
        listener.kill()
        _join([listener])


# --- through NamedCache and the TMDB client (CacheManager(shared=...), rate_limiter=) ----


def _load_through_caches(redis_url: str, namespace: str, *, shared: bool) -> tuple[int, list[Any]]:
    start = CTX.Barrier(_workers.PROCESSES)
    loader_calls = CTX.Value("i", 0)
    queue = CTX.Queue()
    modes = ["threads", "asyncio", "threads", "asyncio"]  # sync and async share one key space
    processes = [
        CTX.Process(
            target=_workers.cache_load_keys,
            args=(redis_url, namespace, mode, seed, start, loader_calls, queue, shared),
        )
        for seed, mode in enumerate(modes)
    ]
    for process in processes:
        process.start()
    try:
        results = _results(queue, len(processes))
    finally:
        _join(processes)
    return loader_calls.value, results


def test_four_processes_of_fifty_tasks_through_named_caches_load_each_key_once(
    redis_url: str, namespace: str
) -> None:
    calls, results = _load_through_caches(redis_url, namespace, shared=True)
    assert [r[0] for r in results] == ["done"] * 4, results
    assert all(not wrong for *_, wrong in results), results
    assert sum(r[2]["fallbacks"] for r in results) == 0
    assert calls == _workers.KEYS  # 20 000 asks, 100 loads in the whole fleet


def test_without_the_shared_tier_each_process_loads_each_key(
    redis_url: str, namespace: str
) -> None:
    calls, results = _load_through_caches(redis_url, namespace, shared=False)
    assert [r[0] for r in results] == ["done"] * 4, results
    assert calls == _workers.PROCESSES * _workers.KEYS  # per process single-flight only


def _watcher(url: str, namespace: str, expected_resyncs: int) -> tuple[Any, Any]:
    ready = CTX.Event()
    queue = CTX.Queue()
    process = CTX.Process(
        target=_workers.watch_a_key, args=(url, namespace, expected_resyncs, ready, queue)
    )
    process.start()
    if not ready.wait(60):
        process.kill()
        raise AssertionError(queue.get_nowait() if not queue.empty() else "never ready")
    return process, queue


def test_a_delete_in_one_process_empties_the_others_local_tier_within_50_ms(
    redis_url: str, namespace: str
) -> None:
    with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as backend:
        cache = CacheManager(shared=backend).get_cache("tmdb")
        cache.set(("movie", 603), "old")
        watcher, queue = _watcher(redis_url, namespace, expected_resyncs=1)
        try:
            sent = time.monotonic()
            cache.delete(("movie", 603))
            kind, dropped_at = queue.get(timeout=10)
            assert kind == "dropped", dropped_at
            assert dropped_at - sent <= 0.050  # time.monotonic is system-wide on Linux
            assert queue.get(timeout=10) == ("read", "missing")  # its next read misses
        finally:
            watcher.kill()
            _join([watcher])


def test_a_delete_while_the_subscription_is_down_is_not_served_after_it_resubscribes(
    running_redis: EmbeddedRedis,
) -> None:
    url, namespace = running_redis.url, "killed-subscription-cache"
    with (
        RedisBackend.from_url(url, namespace=namespace, timeout=5.0) as backend,
        redis.Redis.from_url(url) as raw,
    ):
        cache = CacheManager(shared=backend).get_cache("tmdb")
        cache.set(("movie", 603), "old")
        # 3 resyncs: on subscribing, on losing the subscription, on subscribing again.
        watcher, queue = _watcher(url, namespace, expected_resyncs=3)
        try:
            assert raw.client_kill_filter(_type="pubsub") >= 1
            cache.delete(("movie", 603))  # the watcher is (most likely) not subscribed now
            heard = [queue.get(timeout=30) for _ in range(2)]
            assert heard[0][0] == "dropped", heard  # by the message or by the resync
            assert heard[1] == ("read", "missing"), heard  # never "old"
        finally:
            watcher.kill()
            _join([watcher])


def _tmdb_fleet(
    redis_url: str, namespace: str, base_url: str, max_rps: float, count: int
) -> list[Any]:
    start = CTX.Barrier(_workers.PROCESSES)
    queue = CTX.Queue()
    processes = [
        CTX.Process(
            target=_workers.tmdb_requests,
            args=(redis_url, namespace, base_url, max_rps, seed, count, start, queue),
        )
        for seed in range(_workers.PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        results = _results(queue, len(processes))
    finally:
        _join(processes)
    assert [r[0] for r in results] == ["done"] * 4, results
    return results


def _busiest_second(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_four_tmdb_clients_through_one_limiter_stay_within_max_rps(
    redis_url: str, namespace: str
) -> None:
    fake = FakeTmdb(api_key="k")
    with fake.serve_in_thread() as base_url:
        results = _tmdb_fleet(redis_url, namespace, base_url, 20, 15)
    sends = [sent for _, answered, _ in results for sent, _ in answered]
    assert len(sends) == 60
    assert fake.stats().total_requests == 60
    assert _busiest_second(sends) <= 20  # 4 x 20 without the shared limiter
    assert max(sends) - min(sends) >= 2.5  # 60 requests at 20/s take about 3 s


def test_a_429_with_retry_after_2_stops_every_process_for_2_s(
    redis_url: str, namespace: str
) -> None:
    fake = FakeTmdb(api_key="k", throttle=1, retry_after=2)  # the first request gets 429
    with fake.serve_in_thread() as base_url:
        results = _tmdb_fleet(redis_url, namespace, base_url, 20, 5)
    answered = sorted(pair for _, pairs, _ in results for pair in pairs)
    [limited_at] = [sent for sent, status in answered if status == 429]
    after = [sent for sent, status in answered if sent > limited_at]
    assert len(after) == 20  # every call answered: 4 x 5, the 429's retried
    # Starts reserved before the pause was stored may still go (one interval of
    # 1.05 / 20 s each); after that nobody, in any process, until the 2 s are over.
    held = [sent for sent in after if limited_at + 0.2 < sent < limited_at + 1.9]
    assert held == [], held
    assert {r[1][-1][1] for r in results} == {200}
    assert sum(r[2]["limiter_waits"] for r in results) > 0


def test_redis_frozen_then_killed_mid_load_fails_no_request_and_is_used_again_within_2_s(
    running_redis: EmbeddedRedis,
) -> None:
    url, namespace = running_redis.url, "outage-through-caches"
    stop = CTX.Event()
    queue = CTX.Queue()
    workers = 2
    fallbacks = [CTX.Value("i", 0) for _ in range(workers)]
    last_shared = [CTX.Value("d", 0.0) for _ in range(workers)]
    processes = [
        CTX.Process(
            target=_workers.load_through_outage,
            args=(url, namespace, stop, fallbacks[n], last_shared[n], queue),
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        began = time.monotonic()
        wait_until(lambda: all(v.value > began for v in last_shared), timeout=60, what="running")
        running_redis.pause()  # SIGSTOP mid-load: calls time out
        try:
            wait_until(lambda: all(v.value > 0 for v in fallbacks), timeout=30, what="fallbacks")
        finally:
            running_redis.stop()  # then kill it
        counted = [v.value for v in fallbacks]
        wait_until(
            lambda: all(v.value > c for v, c in zip(fallbacks, counted, strict=True)),
            timeout=30,
            what="fallbacks while it is down",
        )
        running_redis.start()
        back = time.monotonic()
        wait_until(
            lambda: all(v.value > back for v in last_shared),
            timeout=10,
            what="the shared tier is used again",
        )
        rejoined = time.monotonic() - back  # by every worker
        stop.set()
        results = _results(queue, workers)
    finally:
        stop.set()
        _join(processes)
    assert [r[0] for r in results] == ["done"] * workers, results
    assert [r[1] for r in results] == [0] * workers  # 0 failed requests
    assert all(r[2]["fallbacks"] > 0 for r in results)
    assert rejoined <= 2.0
