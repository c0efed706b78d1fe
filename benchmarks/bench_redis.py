"""Benchmark the Redis building blocks against plain redis-py and per-process baselines.

Run with ``make bench BENCH=benchmarks/bench_redis.py``. On an embedded Valkey,
side by side in this one run:

1. Shared hit: ``SharedTier.lookup`` (one script: generations, freshness on
   the server's clock) and ``get_or_load`` on a warm key, against the least a
   shared hit can cost: a plain redis-py ``GET`` plus ``json.loads`` of the
   same 5 KB document. p50 latency, as a ratio.
2. Invalidation latency: one backend deletes a key, another (its own
   connections and subscriber thread, as another process would have) hears
   it; p50 and p99 over sequential deletes, on loopback.
3. Fleet single-flight: 4 processes x 20 threads ask 50 keys (loader 20 ms):
   upstream loads with ``get_or_load`` against "look up, load on a miss, set"
   without a lease (what a shared cache without single-flight does).
4. Fleet rate limit: 4 processes start requests as fast as allowed for 3 s
   at ``max_rps=20``: the busiest one-second window through one
   ``RedisRateLimiter`` against one ``Throttle`` per process (today's
   per-process limit).

Results go to stdout and ``benchmarks/results/bench_redis.json``.
"""

from __future__ import annotations

import bisect
import functools
import json
import multiprocessing
import threading
import time
from typing import Any

import redis

from _common import write_result
from seerrperf import RedisBackend
from seerrperf._runtime import percentile
from seerrperf._tmdb.transport import Throttle
from seerrperf.testing import EmbeddedRedis

DOCUMENT = {
    "id": 603,
    "title": "The Matrix",
    "overview": "x" * 1500,
    "genres": [{"id": n, "name": f"genre {n}"} for n in range(20)],
    "credits": {"cast": [{"id": n, "name": f"actor {n}", "order": n} for n in range(40)]},
}
PROCESSES = 4


def _p50(samples: list[float]) -> float:
    return percentile(samples, 50)


def bench_shared_hit(url: str, rounds: int = 3000) -> dict[str, float]:
    payload = json.dumps(DOCUMENT).encode()
    with (
        RedisBackend.from_url(url, namespace="bench-hit") as backend,
        redis.Redis.from_url(url, protocol=2) as plain,
    ):
        tier = backend.tier("tmdb")
        tier.set(("movie", 603), DOCUMENT, 3600)
        plain.set("bench-hit:plain", payload)
        timings: dict[str, list[float]] = {"get": [], "lookup": [], "get_or_load": []}

        def plain_get() -> object:
            return json.loads(plain.get("bench-hit:plain") or b"null")

        calls = {
            "get": plain_get,
            "lookup": lambda: tier.lookup(("movie", 603)).value,
            "get_or_load": lambda: tier.get_or_load(("movie", 603), dict, ttl=3600).value,
        }
        for _ in range(rounds):  # interleaved, so that load on the machine hits all alike
            for name, call in calls.items():
                began = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - began)
        before = backend.stats().round_trips
        tier.get_or_load(("movie", 1), dict, ttl=3600)
        miss_round_trips = backend.stats().round_trips - before
    base = _p50(timings["get"])
    return {
        "plain_get_p50_us": base * 1e6,
        "lookup_p50_us": _p50(timings["lookup"]) * 1e6,
        "get_or_load_p50_us": _p50(timings["get_or_load"]) * 1e6,
        "lookup_x_get": _p50(timings["lookup"]) / base,
        "get_or_load_x_get": _p50(timings["get_or_load"]) / base,
        "hit_round_trips": 1,
        "miss_round_trips": miss_round_trips,
    }


def bench_invalidation(url: str, count: int = 500) -> dict[str, float]:
    heard: dict[str, float] = {}
    arrived = threading.Event()
    with (
        RedisBackend.from_url(url, namespace="bench-inv") as sender,
        RedisBackend.from_url(url, namespace="bench-inv") as receiver,
    ):
        tier = sender.tier("tmdb")

        def listener(invalidation: Any) -> None:
            if invalidation.kind == "keys":
                heard[invalidation.digests[0]] = time.perf_counter()
                arrived.set()

        receiver.tier("tmdb").subscribe(listener)
        deadline = time.monotonic() + 10
        while not receiver.stats().subscribed and time.monotonic() < deadline:
            arrived.wait(0.01)
        latencies = []
        for n in range(count):
            arrived.clear()
            began = time.perf_counter()
            tier.delete(("movie", n))
            if arrived.wait(5):
                latencies.append(heard[tier.digest(("movie", n)) or ""] - began)
    return {
        "deletes": count,
        "heard": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def _fleet_worker(url: str, namespace: str, leased: bool, start: Any, loads: Any) -> None:
    with RedisBackend.from_url(url, namespace=namespace, timeout=10.0) as backend:
        tier = backend.tier("tmdb")

        def load(key: int) -> dict[str, int]:
            with loads.get_lock():
                loads.value += 1
            time.sleep(0.02)
            return {"id": key}

        def run(seed: int) -> None:
            for key in [(seed * 7 + n) % 50 for n in range(50)]:
                if leased:
                    tier.get_or_load(("movie", key), functools.partial(load, key), ttl=600)
                elif tier.lookup(("movie", key)).state != "fresh":
                    tier.set(("movie", key), load(key), 600)

        threads = [threading.Thread(target=run, args=(seed,)) for seed in range(20)]
        start.wait(60)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)


def bench_fleet_single_flight(url: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    result: dict[str, float] = {}
    for name, leased in (("without_lease", False), ("get_or_load", True)):
        start, loads = ctx.Barrier(PROCESSES), ctx.Value("i", 0)
        namespace = f"bench-fleet-{name}"
        processes = [
            ctx.Process(target=_fleet_worker, args=(url, namespace, leased, start, loads))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(180)
        result[f"{name}_loads"] = loads.value
    result["distinct_keys"] = 50
    result["loads_x_keys_without_lease"] = result["without_lease_loads"] / 50
    result["loads_x_keys_get_or_load"] = result["get_or_load_loads"] / 50
    return result


def _limiter_worker(url: str, namespace: str, fleet: bool, start: Any, queue: Any) -> None:
    with RedisBackend.from_url(url, namespace=namespace, timeout=5.0) as backend:
        limiter = backend.rate_limiter("tmdb", max_rps=20) if fleet else None
        local = Throttle(20, time.monotonic)
        starts: list[float] = []
        pause = threading.Event()
        start.wait(60)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            wait = limiter.reserve() if limiter is not None else local.reserve()
            if wait > 0:
                pause.wait(wait)
            starts.append(time.monotonic())
        queue.put(starts)


def _busiest(starts: list[float]) -> int:
    ordered = sorted(starts)
    return max(bisect.bisect_left(ordered, s + 1.0) - i for i, s in enumerate(ordered))


def bench_fleet_limiter(url: str) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    result: dict[str, float] = {"max_rps": 20}
    for name, fleet in (("per_process", False), ("fleet", True)):
        start, queue = ctx.Barrier(PROCESSES), ctx.Queue()
        processes = [
            ctx.Process(target=_limiter_worker, args=(url, f"bench-rl-{name}", fleet, start, queue))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        starts = [s for _ in processes for s in queue.get(timeout=120)]
        for process in processes:
            process.join(30)
        result[f"{name}_busiest_second"] = _busiest(starts)
        result[f"{name}_x_max_rps"] = _busiest(starts) / 20
    return result


def main() -> None:
    with EmbeddedRedis() as server:
        hit = bench_shared_hit(server.url)
        invalidation = bench_invalidation(server.url)
        fleet = bench_fleet_single_flight(server.url)
        limiter = bench_fleet_limiter(server.url)
    print("\nshared hit (p50)")
    print(f"  plain GET + json.loads  {hit['plain_get_p50_us']:8.1f} us  1.00x")
    print(f"  SharedTier.lookup       {hit['lookup_p50_us']:8.1f} us  {hit['lookup_x_get']:.2f}x")
    ratio = hit["get_or_load_x_get"]
    print(f"  get_or_load (hit)       {hit['get_or_load_p50_us']:8.1f} us  {ratio:.2f}x")
    print(f"  round trips: hit 1, miss+load+store {hit['miss_round_trips']}")
    p50, p99 = invalidation["p50_ms"], invalidation["p99_ms"]
    print(f"\ninvalidation latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"\nfleet single-flight (4 x 20 threads, 50 keys): loads without a lease "
        f"{fleet['without_lease_loads']}, with get_or_load {fleet['get_or_load_loads']}"
    )
    print(
        f"\nbusiest second at max_rps=20 over 4 processes: per-process Throttle "
        f"{limiter['per_process_busiest_second']}, "
        f"RedisRateLimiter {limiter['fleet_busiest_second']}"
    )
    write_result(
        "bench_redis",
        {
            "shared_hit": hit,
            "invalidation": invalidation,
            "fleet_single_flight": fleet,
            "fleet_limiter": limiter,
        },
    )


if __name__ == "__main__":
    main()
