"""The pool-comparison workload: concurrent one-query requests, per connection strategy.

Shared by the demo's pool section and ``benchmarks/bench_pool.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from seerrperf import async_pool_factory
from seerrperf._runtime import percentile

__all__ = ["WorkloadResult", "pool_comparison", "run_workload"]

_QUERY = "SELECT pg_backend_pid()"

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


@dataclass(frozen=True)
class WorkloadResult:
    """What one run of the concurrent query workload measured."""

    name: str
    tasks: int
    elapsed_s: float
    latencies_ms: Sequence[float]
    server_connections: int
    errors: int

    @property
    def throughput(self) -> float:
        return self.tasks / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": self.tasks,
            "elapsed_s": self.elapsed_s,
            "throughput_per_s": self.throughput,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "server_connections": self.server_connections,
            "errors": self.errors,
        }


async def run_workload(name: str, connect: Connect, tasks: int) -> WorkloadResult:
    """Run ``tasks`` concurrent one-query requests, each through ``connect()``.

    Server connections are counted as the distinct backend process ids that
    answered, which is what the server actually had to fork.
    """
    latencies: list[float] = []
    pids: set[int] = set()
    errors = 0

    async def one() -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            async with connect() as conn:
                row = await (await conn.execute(_QUERY)).fetchone()
        except psycopg.Error:
            errors += 1
            return
        latencies.append((time.perf_counter() - t0) * 1000)
        if row:
            pids.add(int(row[0]))

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(one)
    elapsed = time.perf_counter() - start
    return WorkloadResult(name, tasks, elapsed, latencies, len(pids), errors)


def _new_connection(dsn: str) -> Connect:
    @asynccontextmanager
    async def connect() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            yield conn
        finally:
            await conn.close()

    return connect


def _from_pool(pool: AsyncConnectionPool[Any]) -> Connect:
    return pool.connection


async def pool_comparison(
    dsn: str, tasks: int = 200, *, include_default_pool: bool = True, warm: bool = False
) -> list[WorkloadResult]:
    """Run the workload with a new connection per request, psycopg_pool's
    defaults (optional) and ``async_pool_factory``; return the results.

    With ``warm=True`` each pool first serves one unmeasured burst, so the
    measured one finds it grown to what the load needs (steady state under
    load); otherwise the pool starts at ``min_size`` and grows during the
    burst, one connection at a time (psycopg_pool's design).
    """
    suffix = " (warm)" if warm else ""

    async def measure(name: str, pool: AsyncConnectionPool[Any]) -> WorkloadResult:
        async with pool:
            await pool.wait()
            if warm:
                await run_workload(name, _from_pool(pool), tasks)
            return await run_workload(name + suffix, _from_pool(pool), tasks)

    results = [await run_workload("new connection per request", _new_connection(dsn), tasks)]
    if include_default_pool:
        default: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, open=False)
        results.append(await measure("psycopg_pool defaults", default))
    results.append(await measure("seerrperf async_pool_factory", async_pool_factory(dsn)))
    return results
