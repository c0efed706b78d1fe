"""The pool-comparison workload: concurrent short requests, per connection strategy.

Shared by the demo's pool section and ``benchmarks/bench_pool.py``. Each
request checks a connection out, runs one query and gives it back; in the
mixed load every twentieth request (5 %) runs a 50 ms query instead.
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

__all__ = ["MIXED_SLOW_EVERY", "WorkloadResult", "pool_comparison", "run_workload"]

_QUERY = "SELECT pg_backend_pid()"
_SLOW_QUERY = "SELECT pg_backend_pid() FROM pg_sleep(0.05)"
MIXED_SLOW_EVERY = 20
"""In the mixed load, one request in this many runs the 50 ms query."""

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
    connections_opened: int = 0

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
            "connections_opened": self.connections_opened,
            "errors": self.errors,
        }


async def run_workload(
    name: str, connect: Connect, tasks: int, *, mixed: bool = False
) -> WorkloadResult:
    """Run ``tasks`` concurrent one-query requests, each through ``connect()``.

    Server connections are counted as the distinct backend process ids that
    answered, which is what the server actually had to fork. With
    ``mixed=True`` one request in :data:`MIXED_SLOW_EVERY` runs a 50 ms query.
    """
    latencies: list[float] = []
    pids: set[int] = set()
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        query = _SLOW_QUERY if mixed and i % MIXED_SLOW_EVERY == MIXED_SLOW_EVERY - 1 else _QUERY
        t0 = time.perf_counter()
        try:
            async with connect() as conn:
                row = await (await conn.execute(query)).fetchone()
        except psycopg.Error:
            errors += 1
            return
        latencies.append((time.perf_counter() - t0) * 1000)
        if row:
            pids.add(int(row[0]))

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(one, i)
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


async def _measure(
    name: str, pool: AsyncConnectionPool[Any], tasks: int, *, warm: bool, mixed: bool
) -> WorkloadResult:
    async with pool:
        await pool.wait()
        if warm:
            await run_workload(name, pool.connection, tasks, mixed=mixed)
        before = pool.get_stats().get("connections_num", 0)
        result = await run_workload(name, pool.connection, tasks, mixed=mixed)
        opened = pool.get_stats().get("connections_num", 0) - before
    return WorkloadResult(
        result.name,
        result.tasks,
        result.elapsed_s,
        result.latencies_ms,
        result.server_connections,
        result.errors,
        connections_opened=opened,
    )


async def pool_comparison(
    dsn: str,
    tasks: int = 200,
    *,
    include_default_pool: bool = True,
    include_new_connection: bool = True,
    warm: bool = False,
    mixed: bool = False,
    default_first: bool = True,
) -> list[WorkloadResult]:
    """Run the workload with a new connection per request (optional),
    psycopg_pool's defaults (optional) and ``async_pool_factory``; return the
    results in that order.

    With ``warm=True`` each pool first serves one unmeasured burst, so the
    measured one finds it sized for the load (steady state); otherwise the
    pool starts at ``min_size``, opened and ready, as after an app's startup.
    ``default_first=False`` runs seerrperf's pool before psycopg_pool's
    defaults (a benchmark alternates, so neither always runs first);
    ``connections_opened`` counts what each pool opened during the measured
    burst.
    """
    suffix = " (warm)" if warm else ""
    results = []
    if include_new_connection:
        naive = await run_workload(
            "new connection per request", _new_connection(dsn), tasks, mixed=mixed
        )
        results.append(
            WorkloadResult(
                naive.name,
                naive.tasks,
                naive.elapsed_s,
                naive.latencies_ms,
                naive.server_connections,
                naive.errors,
                connections_opened=tasks,
            )
        )
    pools: list[tuple[str, AsyncConnectionPool[Any]]] = []
    if include_default_pool:
        pools.append(("psycopg_pool defaults", AsyncConnectionPool(dsn, open=False)))
    # psycopg_pool's checkout timeout (30 s), not the seed's 2 s: a burst of
    # 1,000 on a busy machine would otherwise shed load instead of queueing.
    pools.append(("seerrperf async_pool_factory", async_pool_factory(dsn, timeout=30.0)))
    order = pools if default_first else pools[::-1]
    measured = {
        name: await _measure(name + suffix, pool, tasks, warm=warm, mixed=mixed)
        for name, pool in order
    }
    results.extend(measured[name] for name, _ in pools)
    return results
