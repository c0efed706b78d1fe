"""TMDB client benchmark against FakeTmdb on a real socket (20 ms latency), both twins.

Everything is measured side by side in this one run:

1. **Hit path.** A cache hit on ``AsyncTmdbClient.get_movie`` against a bare
   ``await NamedCache.aget_or_set`` on the same key with the same TTL and
   stale windows (and against ``NamedCache.get``), and the same for the sync
   ``TmdbClient.get_movie`` against ``NamedCache.get_or_set``: the best of
   many short interleaved rounds, in nanoseconds per call. Goal: within 1.3x
   of the bare cache call.
2. **Async, 100 tasks.** 10,000 movie lookups over 1,000 ids
   (Zipf-distributed, s=1.1), 100 at a time: (a) plain httpx, no cache;
   (b) a Seerr-style cache: the same TTL per endpoint, but no coalescing, so
   concurrent misses of one id all go upstream; (c) ``AsyncTmdbClient``.
3. **Sync, 16 threads.** The same trace from 16 threads: (a) a plain
   ``httpx.Client`` shared by the threads; (b) ``TmdbClient``. Its upstream
   calls must equal the distinct ids of the trace.
4. **The limiter.** 150 distinct ids at once through ``max_rps=50``.

The limiter is set high (``max_rps=10,000``) in 2 and 3 so it does not decide
the comparison, and the timeout generous (60 s) so that a loaded machine
cannot fail a run (it bounds each request, it does not speed it up). All
clients use an httpx client with the same connection limits. Prints the figures and ratios; writes
``benchmarks/results/bench_tmdb.json``.

    make bench BENCH=benchmarks/bench_tmdb.py
    PYTHONPATH=examples .venv/bin/python benchmarks/bench_tmdb.py [--lookups 10000] [--ids 1000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from _common import write_result
from demo.report import format_table
from seerrperf import AsyncTmdbClient, NamedCache, TmdbClient
from seerrperf._runtime import percentile
from seerrperf.testing import FakeTmdb

KEY = "bench-key"
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)
HIT_GOAL = 1.3
BENCH_TIMEOUT = 60.0

Lookup = Callable[[int], Awaitable[Any]]


def zipf_trace(lookups: int, ids: int, seed: int = 42) -> list[int]:
    rng = random.Random(seed)
    weights = [1 / (rank**1.1) for rank in range(1, ids + 1)]
    population = list(range(1, ids + 1))
    rng.shuffle(population)  # popular ids are not simply the small ones
    return rng.choices(population, weights=weights, k=lookups)


# -- 1. hit path ----------------------------------------------------------------------


def _ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": 603, "title": "The Matrix"})


HIT_RATIOS = {
    "async_vs_aget_or_set": (
        "await AsyncTmdbClient.get_movie(603)",
        "await NamedCache.aget_or_set(key, ...)",
    ),
    "sync_vs_get_or_set": ("TmdbClient.get_movie(603)", "NamedCache.get_or_set(key, ...)"),
    "async_vs_get": ("await AsyncTmdbClient.get_movie(603)", "NamedCache.get(key)"),
    "sync_vs_get": ("TmdbClient.get_movie(603)", "NamedCache.get(key)"),
}


async def hit_path(rounds: int, number: int) -> tuple[dict[str, float], dict[str, float]]:
    """Nanoseconds per hit (the best of ``rounds`` short rounds, in alternating order),
    and each ratio of :data:`HIT_RATIOS` as the median of its per-round ratios.

    The minimum of many short rounds filters out time stolen by other
    processes; a ratio taken within each round, then the median, compares
    calls measured moments apart.
    """
    async_cache = NamedCache("async")
    sync_cache = NamedCache("sync")
    mock = httpx.MockTransport(_ok)
    async_tmdb = AsyncTmdbClient(
        api_key=KEY, cache=async_cache, http_client=httpx.AsyncClient(transport=mock)
    )
    sync_tmdb = TmdbClient(api_key=KEY, cache=sync_cache, http_client=httpx.Client(transport=mock))
    await async_tmdb.get_movie(603)
    sync_tmdb.get_movie(603)
    key = ("/movie/603", ())
    assert key in async_cache
    assert key in sync_cache
    policy = async_tmdb.ttl_policy
    ttl = policy.ttl_for("/movie/603")
    windows = {"stale_while_revalidate": policy.swr_for("/movie/603"), "stale_if_error": 86400.0}

    async def aload() -> int:
        return 1

    def load() -> int:
        return 1

    async def bare_aget_or_set() -> float:
        start = time.perf_counter()
        for _ in range(number):
            await async_cache.aget_or_set(key, aload, ttl, **windows)
        return time.perf_counter() - start

    async def client_async() -> float:
        start = time.perf_counter()
        for _ in range(number):
            await async_tmdb.get_movie(603)
        return time.perf_counter() - start

    async def bare_get() -> float:
        start = time.perf_counter()
        for _ in range(number):
            async_cache.get(key)
        return time.perf_counter() - start

    async def bare_get_or_set() -> float:
        start = time.perf_counter()
        for _ in range(number):
            sync_cache.get_or_set(key, load, ttl, **windows)
        return time.perf_counter() - start

    async def client_sync() -> float:
        start = time.perf_counter()
        for _ in range(number):
            sync_tmdb.get_movie(603)
        return time.perf_counter() - start

    cases = {
        "await NamedCache.aget_or_set(key, ...)": bare_aget_or_set,
        "await AsyncTmdbClient.get_movie(603)": client_async,
        "NamedCache.get(key)": bare_get,
        "NamedCache.get_or_set(key, ...)": bare_get_or_set,
        "TmdbClient.get_movie(603)": client_sync,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(rounds):
        for name in names if index % 2 else reversed(names):
            samples[name].append(await cases[name]() / number * 1e9)
    await async_tmdb.aclose()
    sync_tmdb.close()
    best = {name: min(times) for name, times in samples.items()}
    ratios = {
        ratio: statistics.median(
            ours / bare for ours, bare in zip(samples[top], samples[bottom], strict=True)
        )
        for ratio, (top, bottom) in HIT_RATIOS.items()
    }
    return best, ratios


# -- 2. async, many tasks ---------------------------------------------------------------


async def drive(trace: list[int], lookup: Lookup, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    position = iter(trace)

    async def worker() -> None:
        for movie_id in position:
            t0 = time.perf_counter()
            await lookup(movie_id)
            latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return time.perf_counter() - start, latencies


async def run_async(args: argparse.Namespace, trace: list[int], fake: FakeTmdb) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    async with fake.serve() as base_url:

        async def measure(name: str, lookup: Lookup) -> None:
            fake.reset_counters()
            elapsed, latencies = await drive(trace, lookup, args.concurrency)
            rows.append(row(name, fake, len(trace), elapsed, latencies))
            print(f"  {name}: done in {elapsed:.1f} s", flush=True)

        async with httpx.AsyncClient(limits=LIMITS) as http:

            async def plain(movie_id: int) -> Any:
                response = await http.get(f"{base_url}/movie/{movie_id}", params={"api_key": KEY})
                return response.json()

            seerr_cache: dict[str, tuple[float, Any]] = {}

            async def seerr_style(movie_id: int) -> Any:
                # Seerr's ExternalAPI.get: look up, on a miss fetch and store; no
                # in-flight guard, so every concurrent miss goes upstream.
                key = f"{base_url}/movie/{movie_id}"
                hit = seerr_cache.get(key)
                if hit is not None and hit[0] > time.monotonic():
                    return hit[1]
                data = await plain(movie_id)
                seerr_cache[key] = (time.monotonic() + 6 * 3600, data)
                return data

            await measure("(a) plain httpx, no cache", plain)
            await measure("(b) Seerr-style cache, no coalescing", seerr_style)

        async with AsyncTmdbClient(
            api_key=KEY, base_url=base_url, max_rps=10_000, timeout=BENCH_TIMEOUT
        ) as tmdb:
            await measure("(c) seerrperf AsyncTmdbClient", tmdb.get_movie)

        # The limiter on its own: 150 distinct ids, all at once, max_rps=50.
        fake.reset_counters()
        async with AsyncTmdbClient(
            api_key=KEY, base_url=base_url, max_rps=50, timeout=BENCH_TIMEOUT
        ) as limited:
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for movie_id in range(1, 151):
                    tg.start_soon(limited.get_movie, movie_id)
            elapsed = time.perf_counter() - start
    limiter = {"max_rps": 50, "requests": 150, "elapsed_s": elapsed}
    limiter["observed_rps"] = 149 / elapsed  # 150 starts span 149 intervals
    return {"rows": rows, "limiter": limiter}


# -- 3. sync, threads -------------------------------------------------------------------


def drive_threads(
    trace: list[int], lookup: Callable[[int], Any], threads: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []  # list.append is atomic
    position = iter(trace)
    lock = threading.Lock()
    start_together = threading.Barrier(threads + 1)

    def worker() -> None:
        start_together.wait()
        while True:
            with lock:
                movie_id = next(position, None)
            if movie_id is None:
                return
            t0 = time.perf_counter()
            lookup(movie_id)
            latencies.append((time.perf_counter() - t0) * 1000)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        start_together.wait()
        start = time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
    return elapsed, latencies


def run_sync(args: argparse.Namespace, trace: list[int], fake: FakeTmdb) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with fake.serve_in_thread() as base_url:

        def measure(name: str, lookup: Callable[[int], Any]) -> None:
            fake.reset_counters()
            elapsed, latencies = drive_threads(trace, lookup, args.threads)
            rows.append(row(name, fake, len(trace), elapsed, latencies))
            print(f"  {name}: done in {elapsed:.1f} s", flush=True)

        with httpx.Client(limits=LIMITS) as http:

            def plain(movie_id: int) -> Any:
                response = http.get(f"{base_url}/movie/{movie_id}", params={"api_key": KEY})
                return response.json()

            measure(f"(a) plain httpx.Client, {args.threads} threads", plain)
        with TmdbClient(
            api_key=KEY, base_url=base_url, max_rps=10_000, timeout=BENCH_TIMEOUT
        ) as tmdb:
            measure(f"(b) seerrperf TmdbClient, {args.threads} threads", tmdb.get_movie)
    return rows


def row(
    name: str, fake: FakeTmdb, lookups: int, elapsed: float, latencies: list[float]
) -> dict[str, Any]:
    return {
        "name": name,
        "upstream_calls": fake.stats().total_requests,
        "throughput_per_s": lookups / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = rows[0]
    for r in rows:
        r["upstream_ratio"] = r["upstream_calls"] / base["upstream_calls"]
        r["throughput_ratio"] = r["throughput_per_s"] / base["throughput_per_s"]
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(
        format_table(
            ["client", "upstream", "x (a)", "lookups/s", "x (a)", "p50 ms", "p99 ms"],
            [
                [
                    r["name"],
                    r["upstream_calls"],
                    f"{r['upstream_ratio']:.3f}x",
                    r["throughput_per_s"],
                    f"{r['throughput_ratio']:.1f}x",
                    r["p50_ms"],
                    r["p99_ms"],
                ]
                for r in rows
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--ids", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    trace = zipf_trace(args.lookups, args.ids)
    distinct = len(set(trace))

    print(f"1. hit path: best of {args.rounds} interleaved rounds")
    hits, hit_ratios = anyio.run(hit_path, args.rounds, 2000)
    print(format_table(["call", "ns per hit"], [[name, ns] for name, ns in hits.items()]))
    for name, ratio in hit_ratios.items():
        print(f"  {name}: {ratio:.2f}x (median of per-round ratios; goal: within {HIT_GOAL}x)")

    print(
        f"\n2. async: {args.lookups:,} lookups over {args.ids:,} ids (Zipf), "
        f"{args.concurrency} concurrent, {args.latency * 1000:.0f} ms upstream latency"
    )
    async_result = anyio.run(run_async, args, trace, FakeTmdb(api_key=KEY, latency=args.latency))
    rows = with_ratios(async_result["rows"])
    print()
    print_rows(rows)
    ours, seerr = rows[2], rows[1]
    print(
        f"\ndistinct ids in the trace: {distinct}; seerrperf upstream calls: "
        f"{ours['upstream_calls']} ({100 * (1 - ours['upstream_ratio']):.1f}% fewer than (a), "
        f"{seerr['upstream_calls'] / ours['upstream_calls']:.2f}x fewer than (b))"
    )
    lim = async_result["limiter"]
    print(
        f"limiter: {lim['requests']} distinct requests at max_rps={lim['max_rps']}: "
        f"{lim['observed_rps']:.1f} requests/s upstream"
    )

    print(f"\n3. sync: the same trace from {args.threads} threads")
    sync_rows = with_ratios(run_sync(args, trace, FakeTmdb(api_key=KEY, latency=args.latency)))
    print()
    print_rows(sync_rows)
    sync_ours = sync_rows[1]
    print(
        f"\nTmdbClient upstream calls {sync_ours['upstream_calls']} for {distinct} distinct ids "
        f"({'equal' if sync_ours['upstream_calls'] == distinct else 'NOT equal'}); "
        f"throughput {sync_ours['throughput_ratio']:.1f}x plain httpx.Client"
    )
    write_result(
        "bench_tmdb",
        {
            "params": vars(args),
            "distinct_ids": distinct,
            "hit_path_ns": hits,
            "hit_ratios": hit_ratios,
            "hit_goal": HIT_GOAL,
            "rows": rows,
            "limiter": lim,
            "sync_rows": sync_rows,
        },
    )


if __name__ == "__main__":
    main()
