"""``python -m seerrperf demo``: measure what the patterns buy, on a real server.

Section 1 runs the example app (``_demo_app``) in its naive and seerrperf
builds under the same load; section 2 compares connection strategies with the
workload shared with ``benchmarks/bench_pool.py``; section 3 runs a health check.
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

from ._demo_app import LoadPlan, compare_builds, load_media_app, percentile, results_table
from ._pg import async_check_database_health, async_pool_factory

__all__ = ["WorkloadResult", "format_table", "pool_comparison", "run_workload"]

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


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, text_columns: int = 1
) -> str:
    """Render a plain-text table: the first ``text_columns`` left-aligned, the rest right."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in cells:
        out.append(
            "  ".join(
                c.ljust(w) if i < text_columns else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


async def _app_section(dsn: str, quick: bool, say: Callable[[str], None]) -> int:
    media_app = load_media_app()
    if isinstance(media_app, str):
        say(f"-- 1. Example app: skipped -- {media_app}")
        return 0
    plan = LoadPlan.quick() if quick else LoadPlan()
    say("-- 1. Example app (examples/media_app): naive build vs seerrperf build")
    say(
        f"   {plan.users} users x {plan.rounds} rounds, {plan.bursts} bursts of "
        f"{plan.burst_size} requests for one title, TMDB latency {plan.tmdb_latency * 1000:.0f} ms"
    )
    try:
        naive, ours = await compare_builds(media_app, dsn, plan, say)
    except psycopg.errors.InsufficientPrivilege:
        say("   skipped: the example app needs the right to create databases on --dsn")
        return 0
    say("")
    say("   Seed claim vs measured")
    say(
        format_table(
            ["metric", "seed claim", "naive", "seerrperf", "change", "verdict"],
            results_table(naive, ours),
            text_columns=2,
        )
    )
    for line in (
        "naive: a new connection per request, no cache, sequential TMDB calls with plain",
        "httpx, no lock, no unique index. seerrperf: async_pool_factory, AsyncLock + partial",
        "unique index, TmdbClient + batch_fetch, cached queries and images.",
        f"naive served {naive.requests:,} requests in {naive.elapsed_s:.1f} s, seerrperf "
        f"{ours.requests:,} in {ours.elapsed_s:.1f} s. Users pause between",
        "pages, so throughput is the pace each build kept up with. The load generator,",
        "the app and FakeTmdb share this one process.",
    ):
        say(f"   {line}")
    if ours.duplicates or ours.errors:
        say(
            f"   FAILED: the seerrperf build created {ours.duplicates} duplicate(s) "
            f"and answered {ours.errors} request(s) with an error."
        )
        return 1
    return 0


async def _pool_section(dsn: str, tasks: int, say: Callable[[str], None]) -> int:
    say(f"-- 2. Connection pool: {tasks} concurrent requests, one query each")
    results = await pool_comparison(dsn, tasks)
    rows = [
        [
            r.name,
            r.elapsed_s * 1000,
            r.throughput,
            r.percentile(50),
            r.percentile(99),
            r.server_connections,
            r.errors,
        ]
        for r in results
    ]
    say(
        format_table(
            ["strategy", "time ms", "req/s", "p50 ms", "p99 ms", "server conns", "errors"], rows
        )
    )
    naive, ours = results[0], results[-1]
    say(
        f"   seerrperf pool: {ours.throughput / naive.throughput:.1f}x the throughput of a new "
        f"connection per request, {ours.server_connections} server connections instead of "
        f"{naive.server_connections} "
        f"({100 * (1 - ours.server_connections / max(1, naive.server_connections)):.0f}% fewer)."
    )
    say("")
    say("-- 3. Database health check (application/health+json)")
    async with async_pool_factory(dsn, min_size=1, max_size=1) as pool:
        health = await async_check_database_health(pool, timeout=2.0)
    say(f"   status={health.status} latency={health.latency_ms:.1f} ms error={health.error}")
    return 0 if health.healthy and ours.errors == 0 else 1


def run_demo(
    *, dsn: str | None, tasks: int, quick: bool = False, say: Callable[[str], None] = print
) -> int:
    """Run the demo on ``dsn`` or on a fresh embedded server; return an exit code.

    Args:
        dsn: A PostgreSQL server to use (the example app needs the right to
            create databases there); ``None`` starts an embedded one.
        tasks: Concurrent requests in the pool section.
        quick: Run a short load (for CI).
        say: Where the output goes, line by line.

    Returns:
        0, or 1 when the seerrperf build created a duplicate or answered with
        an error, or the pool section failed.
    """

    async def main(dsn: str) -> int:
        code = await _app_section(dsn, quick, say)
        say("")
        return await _pool_section(dsn, tasks, say) or code

    if dsn:
        return anyio.run(main, dsn)
    from .testing import EmbeddedPostgres

    say("Starting an embedded PostgreSQL server ...")
    t0 = time.perf_counter()
    with EmbeddedPostgres() as server:
        say(f"   ready in {time.perf_counter() - t0:.2f} s on 127.0.0.1:{server.port}")
        say("")
        return anyio.run(main, server.dsn)
