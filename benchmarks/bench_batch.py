"""Benchmark batch_fetch and BatchLoader against the usual ways of doing the same work.

1. 200 items, simulated upstream latency of 10-100 ms (triangular, mode 50 ms):
   sequential awaits vs LeMedia-style chunks of 10 (each chunk waits for its
   slowest call) vs ``batch_fetch(concurrency=10)``.
2. Overhead for 10,000 calls that return at once (and that yield once):
   plain ``asyncio.gather`` vs ``batch_fetch`` vs a task per item behind a
   semaphore (the aiometer shape).
3. 500 availability lookups on a real PostgreSQL (embedded server): one query
   per key (sequential, and concurrent over the pool) vs one ``BatchLoader``.

Run: ``make bench BENCH=benchmarks/bench_batch.py``. Prints a table and writes
``benchmarks/results/bench_batch.json``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio

from _common import write_result
from seerrperf import BatchLoader, async_pool_factory, batch_fetch
from seerrperf.testing import EmbeddedPostgres

SEED = 6


async def timed(run: Callable[[], Awaitable[object]], repeat: int = 1) -> float:
    """Median wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- 1. jittered upstream latency -----------------------------------------------


async def latency_section() -> dict[str, float]:
    rng = random.Random(SEED)
    latency = {i: rng.triangular(0.010, 0.100, 0.050) for i in range(200)}
    items = list(latency)

    async def fetch(item: int) -> int:
        await asyncio.sleep(latency[item])
        return item

    async def sequential() -> list[int]:
        return [await fetch(item) for item in items]

    async def chunks_of_10() -> list[int]:
        out: list[int] = []
        for start in range(0, len(items), 10):
            out += await asyncio.gather(*(fetch(i) for i in items[start : start + 10]))
        return out

    async def sliding_window() -> list[int | None]:
        return await batch_fetch(fetch, items, concurrency=10)

    return {
        "sequential": await timed(sequential),
        "chunks of 10 (LeMedia)": await timed(chunks_of_10),
        "batch_fetch(concurrency=10)": await timed(sliding_window),
        "ideal (total latency / 10)": sum(latency.values()) / 10,
    }


# --- 2. overhead for instant items --------------------------------------------------


async def overhead_section(yielding: bool) -> dict[str, float]:
    items = list(range(10_000))

    async def instant(item: int) -> int:
        return item

    async def yields_once(item: int) -> int:
        await asyncio.sleep(0)
        return item

    fn = yields_once if yielding else instant

    async def gather() -> list[int]:
        return await asyncio.gather(*(fn(i) for i in items))

    async def pooled() -> list[int | None]:
        return await batch_fetch(fn, items, concurrency=10)

    async def task_per_item() -> list[int]:
        limiter = anyio.Semaphore(10)
        out = [0] * len(items)

        async def one(index: int) -> None:
            async with limiter:
                out[index] = await fn(items[index])

        async with anyio.create_task_group() as tg:
            for index in range(len(items)):
                tg.start_soon(one, index)
        return out

    for run in (gather, pooled, task_per_item):  # warm up
        await run()
    return {
        "asyncio.gather": await timed(gather, repeat=7),
        "batch_fetch(concurrency=10)": await timed(pooled, repeat=7),
        "task per item + semaphore(10)": await timed(task_per_item, repeat=7),
    }


# --- 3. availability lookups on PostgreSQL ------------------------------------------


async def postgres_section(dsn: str) -> dict[str, float]:
    rng = random.Random(SEED)
    ids = rng.sample(range(1, 12_001), 500)  # about 1 in 6 is not in the table
    known_rows = 10_000
    async with async_pool_factory(dsn, min_size=20, max_size=20) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE availability (tmdb_id integer PRIMARY KEY, status text NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO availability SELECT g, CASE WHEN g %% 3 = 0 THEN 'available' "
                "ELSE 'pending' END FROM generate_series(1, %s) AS g",
                [known_rows],
            )
            await conn.execute("ANALYZE availability")

        async def one(tmdb_id: int) -> str | None:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT status FROM availability WHERE tmdb_id = %s", [tmdb_id]
                )
                row = await cur.fetchone()
                return row[0] if row else None

        async def many(keys: list[int]) -> dict[int, str]:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT tmdb_id, status FROM availability WHERE tmdb_id = ANY(%s)", [keys]
                )
                return dict(await cur.fetchall())

        async def single_sequential() -> list[str | None]:
            return [await one(tmdb_id) for tmdb_id in ids]

        async def single_concurrent() -> list[str | None]:
            return await asyncio.gather(*(one(tmdb_id) for tmdb_id in ids))

        async def loader() -> list[str | None]:
            batcher = BatchLoader(many)  # request-scoped: a new loader per run
            return await asyncio.gather(*(batcher.load(tmdb_id) for tmdb_id in ids))

        expected = await single_sequential()
        for run in (single_concurrent, loader):
            assert await run() == expected, run.__name__
        return {
            "500 single queries, sequential": await timed(single_sequential, repeat=5),
            "500 single queries, concurrent (pool of 20)": await timed(single_concurrent, repeat=5),
            "BatchLoader (500 concurrent load(), 5 queries)": await timed(loader, repeat=5),
        }


# --- report -----------------------------------------------------------------------


def table(title: str, rows: dict[str, float], reference: str) -> list[str]:
    base = rows[reference]
    lines = [f"\n{title}", f"{'':48} {'seconds':>10} {'vs ref':>8}"]
    for name, seconds in rows.items():
        lines.append(f"{name:48} {seconds:10.4f} {seconds / base:7.2f}x")
    lines.append(f"(ref = {reference}; vs ref = time / ref time, higher is slower)")
    return lines


async def main() -> None:
    sections: dict[str, dict[str, float]] = {}
    sections["latency: 200 items, 10-100 ms each"] = await latency_section()
    sections["overhead: 10,000 instant items"] = await overhead_section(yielding=False)
    sections["overhead: 10,000 items that yield once"] = await overhead_section(yielding=True)
    with EmbeddedPostgres() as server:
        sections["postgres: 500 availability lookups"] = await postgres_section(server.dsn)

    references = {
        "latency: 200 items, 10-100 ms each": "batch_fetch(concurrency=10)",
        "overhead: 10,000 instant items": "asyncio.gather",
        "overhead: 10,000 items that yield once": "asyncio.gather",
        "postgres: 500 availability lookups": "BatchLoader (500 concurrent load(), 5 queries)",
    }
    lines = []
    for title, rows in sections.items():
        lines += table(title, rows, references[title])

    lat = sections["latency: 200 items, 10-100 ms each"]
    over = sections["overhead: 10,000 instant items"]
    over_y = sections["overhead: 10,000 items that yield once"]
    pg = sections["postgres: 500 availability lookups"]
    loader_time = pg["BatchLoader (500 concurrent load(), 5 queries)"]
    ratios = {
        "chunks_of_10_over_batch_fetch": lat["chunks of 10 (LeMedia)"]
        / lat["batch_fetch(concurrency=10)"],
        "sequential_over_batch_fetch": lat["sequential"] / lat["batch_fetch(concurrency=10)"],
        "batch_fetch_over_gather_instant": over["batch_fetch(concurrency=10)"]
        / over["asyncio.gather"],
        "task_per_item_over_gather_instant": over["task per item + semaphore(10)"]
        / over["asyncio.gather"],
        "batch_fetch_over_gather_yielding": over_y["batch_fetch(concurrency=10)"]
        / over_y["asyncio.gather"],
        "single_sequential_over_loader": pg["500 single queries, sequential"] / loader_time,
        "single_concurrent_over_loader": pg["500 single queries, concurrent (pool of 20)"]
        / loader_time,
    }
    lines.append("\nRatios (targets: chunks/batch_fetch > 1, batch_fetch/gather <= 1, "
                 "single queries/BatchLoader >= 20):")  # fmt: skip
    lines += [f"  {name:40} {value:8.2f}" for name, value in ratios.items()]
    print("\n".join(lines))

    write_result("bench_batch", {"seconds": sections, "ratios": ratios})


if __name__ == "__main__":
    asyncio.run(main())
