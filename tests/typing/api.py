"""The public API as users write it: type-checked by mypy and pyright, never run.

If a change here stops type-checking, users' code would too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from seerrperf import (
    AsyncLock,
    AsyncTunedConnectionPool,
    BatchLoader,
    CacheControl,
    CacheManager,
    CacheStats,
    HeaderParseError,
    HealthReport,
    HealthResult,
    LockStatistics,
    LockStats,
    NamedCache,
    PgAdvisoryLock,
    PoolConfigurationError,
    PoolForkedError,
    PoolSettings,
    PoolStats,
    QueryTimeout,
    TmdbClient,
    TmdbNotFound,
    TmdbStats,
    TtlPolicy,
    TunedConnectionPool,
    async_check_database_health,
    async_pool_factory,
    batch_fetch,
    cache_control,
    cached,
    check_database_health,
    collect_stats,
    etag_for,
    health_report,
    http_date,
    image_url,
    immutable_headers,
    is_not_modified,
    no_store_headers,
    pool_factory,
    private_headers,
    swr_headers,
)
from seerrperf.prometheus import SeerrperfCollector
from seerrperf.testing import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedRedisError,
    FakeTmdb,
    embedded_postgres,
    embedded_redis,
)


def sync_side() -> None:
    settings: PoolSettings = PoolSettings(max_size=10).replace(timeout=1.0)
    pool: ConnectionPool[psycopg.Connection[Any]] = pool_factory(
        settings=settings, clock=time.monotonic
    )
    with pool, pool.connection() as conn:
        conn.execute("SELECT 1")
    result: HealthResult = check_database_health(pool, timeout=1.0, clock=time.monotonic)
    warning: str | None = result.warning
    server_ms: int | None = result.statement_timeout_ms
    del warning, server_ms
    tuned: TunedConnectionPool = pool_factory(
        query_timeout=None, grow_after=0.02, pgbouncer=True, prepare_threshold=None
    )
    figures: PoolStats = tuned.stats()
    pending: int = figures.connections_pending
    enforced: bool | None = figures.server_timeouts_enforced
    deadline: float | None = PoolSettings(query_timeout="auto").effective_query_timeout()
    del pending, enforced, deadline
    try:
        with tuned.connection() as conn:
            conn.execute("SELECT 1")
    except QueryTimeout as exc:
        lost: psycopg.OperationalError = exc
        del lost
    except (PoolConfigurationError, PoolForkedError):
        pass
    report: HealthReport = health_report(result, version="1.0")
    status: int = report.status_code
    body: str = report.json()
    del status, body

    caches = CacheManager.seerr(clock=lambda: 0.0)
    tmdb_cache: NamedCache = caches.get_cache("tmdb")
    value: int = tmdb_cache.get_or_set("k", lambda: 1, ttl=60)
    stats: CacheStats = tmdb_cache.stats()
    rate: float = stats.hit_rate
    loading: int = stats.loading
    tmdb_cache.delete_matching(lambda key: key == "k")
    own = NamedCache("own", ttl=60, maxsize=100, clock=lambda: 0.0)
    managed = CacheManager(clock=lambda: 0.0)
    del value, rate, loading, own, managed

    @cached(tmdb_cache, ttl=60)
    def recent(limit: int) -> list[str]:
        return [str(limit)]

    rows: list[str] = recent(25)
    recent.invalidate(25)
    recent.cache_clear()
    del rows

    cc = CacheControl(public=True, max_age=60, stale_while_revalidate=600)
    header: str = cc.to_header()
    same: CacheControl = CacheControl.parse(header)
    try:
        checked: CacheControl = CacheControl.parse("public, private", strict=True)
    except HeaderParseError as exc:
        problem: str = str(exc)
        del problem
    else:
        del checked
    headers: dict[str, str] = {
        **swr_headers(60, 600),
        **immutable_headers(now=dt.datetime.now(dt.UTC)),
        **private_headers(),
        **no_store_headers(),
    }
    text: str = cache_control(max_age=10, private=True)
    tag: str = etag_for({"id": 603}, weak=True)
    fresh: bool = is_not_modified({"If-None-Match": tag}, etag=tag)
    date: str = http_date(dt.datetime.now(dt.UTC))
    url: str = image_url("/abc.jpg", "w500")
    ttl: float = TtlPolicy.seerr().with_overrides({"movie": 1.5}).ttl_for("/movie/603")
    tiers: TtlPolicy = TtlPolicy.by_volatility()
    del same, headers, text, fresh, date, url, ttl, tiers

    with embedded_postgres() as dsn, EmbeddedPostgres() as server:
        assert isinstance(dsn, str)
        assert server.dsn

    with embedded_redis(settings={"maxmemory": "10mb"}) as redis_url:
        assert redis_url.startswith("redis://")
    valkey = EmbeddedRedis(settings={"maxmemory-policy": "allkeys-lru"}, password="pw")
    with valkey:
        valkey_url: str = valkey.url
        port: int = valkey.port
        pid: int = valkey.pid
        valkey.pause()
        valkey.resume()
        valkey.restart()
        up: bool = valkey.running
        del valkey_url, port, pid, up
    try:
        valkey.start()
    except EmbeddedRedisError:
        pass
    finally:
        valkey.close()


async def async_side() -> None:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = async_pool_factory(
        max_size=5, clock=time.perf_counter
    )
    tuned: AsyncTunedConnectionPool = async_pool_factory(query_timeout=3.5)
    limit: int = tuned.stats().pool_limit
    del limit
    async with pool:
        result = await async_check_database_health(pool, clock=time.monotonic)
        assert result.healthy

        lock = AsyncLock()
        async with lock(("movie", 603), timeout=1.5):
            pass

        async def create(title: str, year: int) -> dict[str, object]:
            return {"title": title, "year": year}

        made: dict[str, object] = await lock.dispatch(("movie", 603), create, "Matrix", 1999)
        lock_stats: LockStats = lock.stats()
        lock_dict: dict[str, int] = lock_stats.as_dict()
        old_name: LockStatistics = lock.statistics()  # deprecated, still typed for one release
        del old_name
        held: bool = lock.locked(("movie", 603))
        del made, lock_stats, lock_dict, held

        adv = PgAdvisoryLock(pool, namespace="media")
        async with adv(("movie", 603), timeout=2.0) as conn:
            await conn.execute("SELECT 1")
        adv_stats: LockStats = adv.stats()
        lock_id: int = adv.advisory_key(("movie", 603))
        del adv_stats, lock_id

        cache = NamedCache("tmdb", ttl=300, maxsize=1000)

        async def load() -> dict[str, int]:
            return {"id": 603}

        movie: dict[str, int] = await cache.aget_or_set(
            "k", load, 60, stale_while_revalidate=30, stale_if_error=3600
        )
        del movie

        async def fetch(movie_id: int) -> str:
            return str(movie_id)

        fetched: list[str | None] = await batch_fetch(fetch, [1, 2, 3], concurrency=5)
        failures: list[str | Exception] = await batch_fetch(fetch, [1], return_exceptions=True)
        del fetched, failures

        async def availability(ids: list[int]) -> Mapping[int, bool]:
            return dict.fromkeys(ids, True)

        loader: BatchLoader[int, bool] = BatchLoader(availability, max_batch_size=50)
        one: bool | None = await loader.load(603)
        many: list[bool | None] = await loader.load_many([1, 2])
        del one, many

        fake = FakeTmdb(api_key="k", latency=0.01)
        async with (
            fake.serve() as base_url,
            TmdbClient(api_key="k", base_url=base_url, cache=cache) as tmdb,
        ):
            details: dict[str, Any] = await tmdb.get_movie(603)
            batch: list[dict[str, Any] | None] = await tmdb.get_movies([603, 604])
            tmdb_stats: TmdbStats = tmdb.stats()
            del details, batch, tmdb_stats
        client = TmdbClient(
            access_token="t", http_client=httpx.AsyncClient(transport=fake.transport())
        )
        try:
            await client.get_tv(1399)
        except TmdbNotFound as exc:
            missing: int | None = exc.status
            del missing
        await client.aclose()

        snapshot: dict[str, Any] = collect_stats(pool=pool, caches=CacheManager(), locks=lock)
        collector = SeerrperfCollector(pool=pool)
        del snapshot, collector
