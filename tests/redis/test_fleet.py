"""Several real processes on one Valkey: fleet-wide single-flight, takeover, stale refreshes,
invalidations, and the subscription's resync (multiprocessing, spawn)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
import redis

from seerrperf import RedisBackend
from seerrperf.testing import EmbeddedRedis

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
