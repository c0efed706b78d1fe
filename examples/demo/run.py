"""The demo itself: its three sections, on a given server or an embedded one.

1. the example app (``examples/media_app``) in its naive and seerrperf
   builds under the same load (``builds.py``, ``load.py``), with the
   "seed claim vs measured" table (``report.py``);
2. connection strategies compared under one burst (``workload.py``, the
   workload ``benchmarks/bench_pool.py`` measures too);
3. a database health check;
4. a fleet of worker processes, per-process caches vs the shared tier on
   Valkey (``fleet.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import psycopg

from seerrperf import async_check_database_health, async_pool_factory
from seerrperf.testing import EmbeddedPostgres

from .builds import compare_builds, load_media_app
from .fleet import fleet_section
from .load import EXPECTED_STATUSES, LoadPlan
from .report import format_table, results_table
from .workload import pool_comparison

__all__ = ["run_demo"]


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
        "unique index, AsyncTmdbClient + batch_fetch, cached queries and images.",
        f"naive served {naive.requests:,} requests in {naive.elapsed_s:.1f} s, seerrperf "
        f"{ours.requests:,} in {ours.elapsed_s:.1f} s. Users pause between",
        "pages, so throughput is the pace each build kept up with. The load generator,",
        "the app and FakeTmdb share this one process.",
    ):
        say(f"   {line}")
    if ours.duplicates or ours.errors:
        unexpected = sorted(
            (status, count)
            for status, count in ours.statuses.items()
            if status not in EXPECTED_STATUSES
        )
        detail = ", ".join(f"{count} x HTTP {status}" for status, count in unexpected)
        transport = ours.errors - sum(count for _, count in unexpected)
        if transport:
            detail = ", ".join(filter(None, [detail, f"{transport} x no answer"]))
        say(
            f"   FAILED: the seerrperf build created {ours.duplicates} duplicate(s) "
            f"and answered {ours.errors} request(s) with an error ({detail or 'none'})."
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

    def fleet(code: int) -> int:
        say("")
        return fleet_section(quick, say) or code

    if dsn:
        return fleet(anyio.run(main, dsn))
    say("Starting an embedded PostgreSQL server ...")
    t0 = time.perf_counter()
    with EmbeddedPostgres() as server:
        say(f"   ready in {time.perf_counter() - t0:.2f} s on 127.0.0.1:{server.port}")
        say("")
        code = anyio.run(main, server.dsn)
    return fleet(code)
