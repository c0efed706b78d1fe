"""Benchmark a fleet of 4 worker processes: per process, with the shared tier, and with Redis
stopped halfway.

Run with ``make bench BENCH=benchmarks/bench_fleet.py``. Each worker is a
spawned process built as the example app builds its TMDB side -- a
``CacheManager`` (``shared=backend`` in the shared builds) whose ``tmdb`` cache
an ``AsyncTmdbClient`` uses, with ``rate_limiter=backend.rate_limiter("tmdb",
max_rps=40)`` in the shared builds and its own ``max_rps=40`` otherwise -- and
sends Zipf-distributed ``get_movie`` calls from 8 tasks to one FakeTmdb
(20 ms latency, in this process). Side by side in one run:

1. **Upstream calls against distinct ids.** Per process, each worker loads
   every id it sees (the popular ids 4 times, the rare ones once); with the
   shared tier, each id once for the fleet. With Redis stopped halfway
   (SIGSTOP, then killed) the workers fall back to their own tiers: no call
   fails, and upstream calls grow by what each worker had not seen.
2. **Busiest second of TMDB traffic** against ``max_rps``: up to 4x the
   limit per process, at most the limit with the shared limiter; with Redis
   gone each worker keeps ``max_rps / expected_workers`` (the second of the
   switch-over itself is what the stopped build's figure shows).
3. **Invalidation latency**: the parent deletes a key of a shared cache; a
   worker's listener, registered after its cache's, stamps the moment its
   local tier has dropped the key. p50 and p99, across processes, on loopback.
4. **Shared-hit latency**: ``NamedCache.get`` after a local miss, answered by
   the shared tier (one round trip), p50.
5. **Local-hit cost**: ``NamedCache.get`` hits with a shared tier against the
   same without one (timed back to back in each round): the ratio.

Results go to stdout and ``benchmarks/results/bench_fleet.json``.
"""

from __future__ import annotations

import bisect
import multiprocessing
import random
import statistics
import threading
import time
import timeit
from typing import Any

import anyio
import httpx

from _common import write_result
from seerrperf import AsyncTmdbClient, CacheManager, NamedCache, RedisBackend
from seerrperf._runtime import percentile
from seerrperf.testing import EmbeddedRedis, FakeTmdb

PROCESSES = 4
TASKS = 8
REQUESTS = 200  # per worker
IDS = 2000
ZIPF_S = 1.2
MAX_RPS = 40
LATENCY = 0.02
CTX = multiprocessing.get_context("spawn")


def _zipf_ids(seed: int, count: int) -> list[int]:
    rng = random.Random(seed)
    weights = [1 / rank**ZIPF_S for rank in range(1, IDS + 1)]
    return rng.choices(range(1, IDS + 1), weights=weights, k=count)


def _worker(
    redis_url: str | None,
    namespace: str,
    base_url: str,
    seed: int,
    start: Any,
    progress: Any,
    queue: Any,
) -> None:
    try:
        anyio.run(_aworker, redis_url, namespace, base_url, seed, start, progress, queue)
    except BaseException as exc:
        queue.put({"error": repr(exc)})


async def _aworker(
    redis_url: str | None,
    namespace: str,
    base_url: str,
    seed: int,
    start: Any,
    progress: Any,
    queue: Any,
) -> None:
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.monotonic())

    backend = (
        None
        if redis_url is None
        else RedisBackend.from_url(
            redis_url,
            namespace=namespace,
            timeout=0.2,
            retry_interval=0.5,
            expected_workers=PROCESSES,
        )
    )
    caches = CacheManager() if backend is None else CacheManager(shared=backend)
    limiter = None if backend is None else backend.rate_limiter("tmdb", max_rps=MAX_RPS)
    ids = _zipf_ids(seed, REQUESTS)
    failed = 0
    async with (
        httpx.AsyncClient(event_hooks={"request": [on_request]}, timeout=60) as http,
        AsyncTmdbClient(
            api_key="k",
            base_url=base_url,
            http_client=http,
            cache=caches.get_cache("tmdb"),
            max_rps=MAX_RPS,
            rate_limiter=limiter,
            timeout=120,
        ) as tmdb,
    ):
        await anyio.to_thread.run_sync(start.wait, 60)

        async def run(part: list[int]) -> None:
            nonlocal failed
            for movie_id in part:
                try:
                    await tmdb.get_movie(movie_id)
                except Exception:
                    failed += 1
                with progress.get_lock():
                    progress.value += 1

        async with anyio.create_task_group() as tg:
            for task in range(TASKS):
                tg.start_soon(run, ids[task::TASKS])
    stats = {} if backend is None else backend.stats().as_dict()
    caches.close()
    if backend is not None:
        await backend.aclose()
    queue.put({"sent": sent, "ids": sorted(set(ids)), "failed": failed, "redis": stats})


def _busiest(times: list[float]) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered))


def bench_build(name: str, server: EmbeddedRedis | None, *, stop_halfway: bool) -> dict[str, Any]:
    """One build: 4 workers, a fresh FakeTmdb; Redis stopped halfway if asked."""
    fake = FakeTmdb(api_key="k", latency=LATENCY)
    start, progress, queue = CTX.Barrier(PROCESSES + 1), CTX.Value("i", 0), CTX.Queue()
    url = None if server is None else server.url
    with fake.serve_in_thread() as base_url:
        processes = [
            CTX.Process(
                target=_worker,
                args=(url, f"bench-fleet-{name}", base_url, seed, start, progress, queue),
            )
            for seed in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        start.wait(120)
        began = time.monotonic()
        stopped_at = None
        if stop_halfway and server is not None:
            tick = threading.Event()
            while progress.value < PROCESSES * REQUESTS // 2:
                tick.wait(0.005)
            stopped_at = time.monotonic() - began
            server.pause()  # SIGSTOP mid-load ...
            tick.wait(0.5)
            server.stop()  # ... then killed
        results = [queue.get(timeout=600) for _ in processes]
        elapsed = time.monotonic() - began
        for process in processes:
            process.join(60)
        upstream = fake.stats().total_requests
    if server is not None and stop_halfway:
        server.start()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{name}: {errors}")
    distinct = len({movie_id for r in results for movie_id in r["ids"]})
    sends = [t for r in results for t in r["sent"]]
    return {
        "requests": PROCESSES * REQUESTS,
        "distinct_ids": distinct,
        "upstream_calls": upstream,
        "upstream_x_distinct": upstream / distinct,
        "busiest_second": _busiest(sends),
        "busiest_x_max_rps": _busiest(sends) / MAX_RPS,
        "failed_requests": sum(r["failed"] for r in results),
        "fallbacks": sum(r["redis"].get("fallbacks", 0) for r in results),
        "seconds": elapsed,
        "redis_stopped_at_s": stopped_at,
    }


def _listen(url: str, namespace: str, ready: Any, queue: Any) -> None:
    backend = RedisBackend.from_url(url, namespace=namespace, timeout=2.0)
    cache = CacheManager(shared=backend).get_cache("tmdb")

    def heard(invalidation: Any) -> None:  # runs after the cache's own listener
        if invalidation.kind == "keys":
            queue.put(time.monotonic())
        elif invalidation.kind == "resync":
            ready.set()

    assert cache.shared is not None
    cache.shared.subscribe(heard)
    threading.Event().wait(3600)


def bench_invalidation(url: str, count: int = 500) -> dict[str, float]:
    ready, queue = CTX.Event(), CTX.Queue()
    listener = CTX.Process(target=_listen, args=(url, "bench-fleet-inv", ready, queue))
    listener.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the listener never subscribed")
        latencies = []
        with RedisBackend.from_url(url, namespace="bench-fleet-inv", timeout=2.0) as backend:
            cache = CacheManager(shared=backend).get_cache("tmdb")
            for n in range(count):
                began = time.monotonic()
                cache.delete(("movie", n))
                latencies.append(queue.get(timeout=10) - began)
    finally:
        listener.kill()
        listener.join(10)
    return {
        "deletes": count,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def bench_shared_hit(url: str, count: int = 2000) -> dict[str, float]:
    with (
        RedisBackend.from_url(url, namespace="bench-fleet-hit", timeout=2.0) as writer,
        RedisBackend.from_url(url, namespace="bench-fleet-hit", timeout=2.0) as reader,
    ):
        filled = NamedCache("tmdb", shared=writer.tier("tmdb"))
        document = {"id": 0, "title": "x" * 200, "genres": [{"id": n} for n in range(10)]}
        for n in range(count):
            filled.set(("movie", n), {**document, "id": n})
        cache = NamedCache("tmdb", shared=reader.tier("tmdb"))
        cache.get("warm-up")  # the scripts are loaded on first use
        timings = []
        for n in range(count):  # each a local miss answered by the shared tier
            began = time.perf_counter()
            value = cache.get(("movie", n))
            timings.append(time.perf_counter() - began)
            assert value is not None
        shared_hits = cache.stats().shared_hits
    return {"p50_us": percentile(timings, 50) * 1e6, "shared_hits": shared_hits}


def bench_local_hit(url: str, number: int = 20_000, rounds: int = 40) -> dict[str, float]:
    with RedisBackend.from_url(url, namespace="bench-fleet-local") as backend:
        plain = NamedCache("plain")
        shared = NamedCache("tmdb", shared=backend.tier("tmdb"))
        for cache in (plain, shared):
            cache.set("k", 1)
        before = backend.stats().round_trips
        timers = {
            "plain": timeit.Timer("c.get('k')", globals={"c": plain}),
            "shared": timeit.Timer("c.get('k')", globals={"c": shared}),
        }
        per_round: dict[str, list[float]] = {name: [] for name in timers}
        for _ in range(rounds):
            for name, timer in timers.items():
                per_round[name].append(timer.timeit(number) / number * 1e9)
        trips = backend.stats().round_trips - before
    ratios = [s / p for s, p in zip(per_round["shared"], per_round["plain"], strict=True)]
    return {
        "plain_ns": min(per_round["plain"]),
        "shared_ns": min(per_round["shared"]),
        "median_round_ratio": statistics.median(ratios),
        "round_trips_during_hits": trips,
    }


def main() -> None:
    builds: dict[str, dict[str, Any]] = {}
    with EmbeddedRedis() as server:
        builds["per_process"] = bench_build("per-process", None, stop_halfway=False)
        builds["shared"] = bench_build("shared", server, stop_halfway=False)
        builds["shared_redis_stopped_halfway"] = bench_build("stopped", server, stop_halfway=True)
        invalidation = bench_invalidation(server.url)
        shared_hit = bench_shared_hit(server.url)
        local_hit = bench_local_hit(server.url)
    print(
        f"\n4 workers x {REQUESTS} Zipf(s={ZIPF_S}) get_movie over {IDS} ids, "
        f"FakeTmdb at {LATENCY * 1000:.0f} ms, max_rps={MAX_RPS}"
    )
    print(
        f"{'build':32} {'distinct':>8} {'upstream':>8} {'x':>5} {'busiest 1 s':>11} {'failed':>6}"
    )
    for name, b in builds.items():
        print(
            f"{name:32} {b['distinct_ids']:8} {b['upstream_calls']:8} "
            f"{b['upstream_x_distinct']:5.2f} {b['busiest_second']:11} {b['failed_requests']:6}"
        )
    print(
        f"\ninvalidation latency across processes: p50 {invalidation['p50_ms']:.2f} ms, "
        f"p99 {invalidation['p99_ms']:.2f} ms"
    )
    print(f"shared hit (NamedCache.get after a local miss): p50 {shared_hit['p50_us']:.0f} us")
    print(
        f"local hit: {local_hit['plain_ns']:.0f} ns without, {local_hit['shared_ns']:.0f} ns "
        f"with a shared tier (median round ratio {local_hit['median_round_ratio']:.2f}x, "
        f"{local_hit['round_trips_during_hits']} round trips)"
    )
    write_result(
        "bench_fleet",
        {
            "parameters": {
                "processes": PROCESSES,
                "tasks": TASKS,
                "requests_per_process": REQUESTS,
                "ids": IDS,
                "zipf_s": ZIPF_S,
                "max_rps": MAX_RPS,
                "latency_s": LATENCY,
            },
            "builds": builds,
            "invalidation": invalidation,
            "shared_hit": shared_hit,
            "local_hit": local_hit,
        },
    )


if __name__ == "__main__":
    main()
