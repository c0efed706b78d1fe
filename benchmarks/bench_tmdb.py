"""TMDB client benchmark against FakeTmdb on a real socket (20 ms latency).

10,000 movie lookups over 1,000 ids (Zipf-distributed, s=1.1), 100 at a time:

  (a) plain httpx, no cache;
  (b) a Seerr-style cache: the same TTL per endpoint, but no coalescing, so
      concurrent misses of one id all go upstream;
  (c) seerrperf's TmdbClient.

The limiter is set high (max_rps=10,000) so it does not decide the
comparison; a separate run shows it holds the upstream rate at max_rps=50.
All three use an httpx client with the same connection limits. Prints upstream
calls, throughput and p50/p99 per lookup, and ratios against (a); writes
benchmarks/results/bench_tmdb.json.

    make bench BENCH=benchmarks/bench_tmdb.py
    PYTHONPATH=examples .venv/bin/python benchmarks/bench_tmdb.py [--lookups 10000] [--ids 1000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from _common import write_result
from demo.report import format_table
from seerrperf import TmdbClient
from seerrperf._runtime import percentile
from seerrperf.testing import FakeTmdb

KEY = "bench-key"
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32)

Lookup = Callable[[int], Awaitable[Any]]


def zipf_trace(lookups: int, ids: int, seed: int = 42) -> list[int]:
    rng = random.Random(seed)
    weights = [1 / (rank**1.1) for rank in range(1, ids + 1)]
    population = list(range(1, ids + 1))
    rng.shuffle(population)  # popular ids are not simply the small ones
    return rng.choices(population, weights=weights, k=lookups)


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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    trace = zipf_trace(args.lookups, args.ids)
    fake = FakeTmdb(api_key=KEY, latency=args.latency)
    rows: list[dict[str, Any]] = []
    async with fake.serve() as base_url:

        async def measure(name: str, lookup: Lookup) -> None:
            fake.reset_counters()
            elapsed, latencies = await drive(trace, lookup, args.concurrency)
            rows.append(
                {
                    "name": name,
                    "upstream_calls": fake.stats().total_requests,
                    "throughput_per_s": len(trace) / elapsed,
                    "p50_ms": percentile(latencies, 50),
                    "p99_ms": percentile(latencies, 99),
                }
            )
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

        async with TmdbClient(api_key=KEY, base_url=base_url, max_rps=10_000) as tmdb:
            await measure("(c) seerrperf TmdbClient", tmdb.get_movie)

        # The limiter on its own: 150 distinct ids, all at once, max_rps=50.
        fake.reset_counters()
        async with TmdbClient(api_key=KEY, base_url=base_url, max_rps=50) as limited:
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for movie_id in range(1, 151):
                    tg.start_soon(limited.get_movie, movie_id)
            elapsed = time.perf_counter() - start
        limiter = {"max_rps": 50, "requests": 150, "elapsed_s": elapsed}
        limiter["observed_rps"] = 149 / elapsed  # 150 starts span 149 intervals
    return {"rows": rows, "limiter": limiter, "distinct_ids": len(set(trace))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--ids", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.020)
    args = parser.parse_args()
    print(
        f"{args.lookups:,} lookups over {args.ids:,} ids (Zipf), {args.concurrency} concurrent, "
        f"{args.latency * 1000:.0f} ms upstream latency"
    )
    result = anyio.run(run, args)
    rows = result["rows"]
    base = rows[0]
    for row in rows:
        row["upstream_ratio"] = row["upstream_calls"] / base["upstream_calls"]
        row["throughput_ratio"] = row["throughput_per_s"] / base["throughput_per_s"]
    print()
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
    ours, seerr = rows[2], rows[1]
    print(
        f"\ndistinct ids in the trace: {result['distinct_ids']}; seerrperf upstream calls: "
        f"{ours['upstream_calls']} ({100 * (1 - ours['upstream_ratio']):.1f}% fewer than (a), "
        f"{seerr['upstream_calls'] / ours['upstream_calls']:.2f}x fewer than (b))"
    )
    lim = result["limiter"]
    print(
        f"limiter: {lim['requests']} distinct requests at max_rps={lim['max_rps']}: "
        f"{lim['observed_rps']:.1f} requests/s upstream"
    )
    write_result("bench_tmdb", {"params": vars(args), **result})


if __name__ == "__main__":
    main()
