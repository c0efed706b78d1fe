"""The public API as users write it: type-checked by mypy and pyright, never run.

If a change here stops type-checking, users' code would too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from seerrperf import (
    AsyncLock,
    AsyncPgAdvisoryLock,
    AsyncTmdbClient,
    AsyncTunedConnectionPool,
    BatchLoader,
    CacheControl,
    CacheManager,
    CacheStats,
    HeaderParseError,
    HealthReport,
    HealthResult,
    KeyedLock,
    LockLost,
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
from seerrperf.prometheus import PrometheusExporter, SeerrperfCollector
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

    keyed = KeyedLock()
    with keyed(("movie", 603), timeout=1.5) as nothing:
        assert nothing is None

    def add(a: int, b: int) -> int:
        return a + b

    total: int = keyed.dispatch(("movie", 603), add, 1, 2)
    keyed_stats: LockStats = keyed.stats()
    del total, keyed_stats

    adv = PgAdvisoryLock(pool, namespace="media")
    try:
        with adv(("movie", 603), timeout=2.0) as sync_conn:
            sync_conn.execute("SELECT 1")
    except LockLost as lost:
        committed: bool | None = lost.committed
        del committed

    def insert(c: psycopg.Connection[Any], tmdb_id: int) -> bool:
        c.execute("SELECT %s", (tmdb_id,))
        return True

    inserted: bool = adv.dispatch(("movie", 603), insert, 603)
    same_id: bool = adv.advisory_key(1) == AsyncPgAdvisoryLock(
        async_pool_factory(), namespace="media"
    ).advisory_key(1)
    del inserted, same_id

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
        timed_out: psycopg.OperationalError = exc
        del timed_out
    except (PoolConfigurationError, PoolForkedError):
        pass
    report: HealthReport = health_report(result, version="1.0")
    status: int = report.status_code
    body: str = report.json()
    del status, body

    caches = CacheManager.seerr(clock=lambda: 0.0)
    tmdb_cache: NamedCache = caches.get_cache("tmdb")
    value: int = tmdb_cache.get_or_set("k", lambda: 1, ttl=60)
    stale: int = tmdb_cache.get_or_set(
        "k", lambda: 1, ttl=60, stale_while_revalidate=300, stale_if_error=3_600
    )
    stats: CacheStats = tmdb_cache.stats()
    rate: float = stats.hit_rate
    loading: int = stats.loading
    tmdb_cache.delete_matching(lambda key: key == "k")
    own = NamedCache("own", ttl=60, maxsize=100, clock=lambda: 0.0)
    managed = CacheManager(clock=lambda: 0.0)
    del value, stale, rate, loading, own, managed

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

        adv = AsyncPgAdvisoryLock(pool, namespace="media")
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
            AsyncTmdbClient(api_key="k", base_url=base_url, cache=cache) as tmdb,
        ):
            details: dict[str, Any] = await tmdb.get_movie(603)
            batch: list[dict[str, Any] | None] = await tmdb.get_movies([603, 604])
            tmdb_stats: TmdbStats = tmdb.stats()
            root: str = await tmdb.image_base_url()
            poster: str = image_url("/a.jpg", "w342", base_url=root)
            del details, batch, tmdb_stats, poster
        client = AsyncTmdbClient(
            access_token="t",
            http_client=httpx.AsyncClient(transport=fake.transport()),
            timeout=5.0,
            max_body_bytes=4 << 20,
        )
        try:
            await client.get_tv(1399)
        except TmdbNotFound as exc:
            missing: int | None = exc.status
            del missing
        await client.aclose()
        with (
            fake.serve_in_thread() as sync_base_url,
            TmdbClient(api_key="k", base_url=sync_base_url, timeout=2.0) as sync_tmdb,
        ):
            sync_movie: dict[str, Any] = sync_tmdb.get_movie(603)
            sync_batch: list[dict[str, Any] | None] = sync_tmdb.get_movies([1, 2], concurrency=2)
            sync_root: str = sync_tmdb.image_base_url()
            sync_stats: TmdbStats = sync_tmdb.stats()
            del sync_movie, sync_batch, sync_root, sync_stats
        collect_stats(tmdb=client)

        snapshot: dict[str, Any] = collect_stats(pool=pool, caches=CacheManager(), locks=lock)
        sized: dict[str, Any] = collect_stats(caches=CacheManager(), sizes="exact")
        collector = SeerrperfCollector(pool=pool, tmdb=client)
        exporter = PrometheusExporter(pool=pool, flush_interval=None)
        fleet: bool = exporter.multiprocess
        exporter.flush()
        exporter.close()
        del snapshot, sized, collector, fleet


# --- seerrperf.fastapi ------------------------------------------------------------------


def fastapi_app() -> None:
    """The FastAPI integration as an app writes it."""
    from contextlib import asynccontextmanager
    from typing import Annotated

    from fastapi import FastAPI
    from pydantic import BaseModel
    from starlette.requests import Request
    from starlette.responses import Response

    from seerrperf.fastapi import (
        AdvisoryLock,
        Caches,
        Lock,
        Pool,
        Seerrperf,
        Tmdb,
        json_body,
        json_response,
    )

    sp = Seerrperf.from_env(pool=PoolSettings(max_size=5), health_timeout=1.5)
    other = Seerrperf(database_url="postgresql://db/app", caches=CacheManager.seerr())
    del other

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
        async with sp.lifespan(app, database_url="postgresql://db/app"):
            async with sp.pool.connection() as conn:
                await conn.execute("SELECT 1")
            yield

    app = FastAPI(lifespan=lifespan)
    FastAPI(lifespan=sp.lifespan)
    sp.install(app, relative_redirects=True)
    app.include_router(sp.health_router(live_path="/live", ready_path="/ready"))

    class Body(BaseModel):
        movie_id: int

    @app.post("/request")
    async def create(
        request: Request,
        body: Annotated[Body, json_body(Body)],
        pool: Pool,
        tmdb: Tmdb,
        caches: Caches,
        lock: Lock,
        adv: AdvisoryLock,
    ) -> Response:
        movie: dict[str, Any] = await tmdb.get_movie(body.movie_id)
        async with lock(("movie", body.movie_id), timeout=1.0):
            pass
        async with adv(("movie", body.movie_id), timeout=1.0) as conn:
            await conn.execute("SELECT 1")
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        names: list[str] = caches.names()
        stats: dict[str, Any] = sp.stats()
        del names, stats
        return json_response(request, movie, cache_control=CacheControl(no_store=True))

    result: Awaitable[HealthResult] = sp.check_health()
    del result


def redis_scale_out(url: str) -> None:
    """The Redis building blocks (issue 18), sync and async, as the wiring will use them."""
    import seerrperf as sp

    backend: sp.RedisBackend = sp.RedisBackend.from_url(
        url, namespace="app", timeout=0.5, serializer=sp.JsonSerializer(), expected_workers=4
    )
    tier: sp.SharedTier = backend.tier("tmdb")
    digest: str | None = tier.digest(("movie", 603))
    found: sp.SharedLookup = tier.lookup(("movie", 603), lease=True, stale_while_revalidate=60)
    if found.lease is not None:
        lease: sp.Lease = found.lease
        outcome: str = tier.fill(lease, {"id": 603}, 3600, stale_window=60)
        del outcome
    loaded: sp.SharedLoad = tier.get_or_load(("movie", 603), lambda: {"id": 603}, ttl=3600)
    if loaded.refresh is not None:
        tier.refresh(loaded.refresh, lambda: {"id": 603}, ttl=3600)
    stored: str = tier.set(("movie", 603), {"id": 603}, 3600)
    deleted: bool = tier.delete(("movie", 603)) and tier.clear() and backend.flush()

    def on_invalidation(invalidation: sp.Invalidation) -> None:
        kind: str = invalidation.kind
        digests: tuple[str, ...] = invalidation.digests
        del kind, digests

    subscription: sp.Subscription = tier.subscribe(on_invalidation)
    subscription.close()
    limiter: sp.RedisRateLimiter = backend.rate_limiter("tmdb", max_rps=40, margin=0.05)
    limiter.pause(2.0)
    wait: float = limiter.reserve() + limiter.pause_left()
    stats: sp.RedisStats = backend.stats()
    health: sp.HealthResult = sp.check_redis_health(backend)
    critical: bool = health.critical
    serializer: sp.Serializer = sp.PickleSerializer()
    backend.close()
    del digest, loaded, stored, deleted, wait, stats, critical, serializer

    async def from_async() -> None:
        async with sp.RedisBackend.from_url(url) as abackend:
            atier = abackend.tier("tmdb")

            async def load() -> dict[str, int]:
                return {"id": 603}

            got: sp.SharedLoad = await atier.aget_or_load(("movie", 603), load, ttl=60)
            looked: sp.SharedLookup = await atier.alookup(("movie", 603))
            await atier.aset(("movie", 603), 1, 60)
            await atier.adelete(("movie", 603))
            await atier.aclear()
            await abackend.aflush()
            alimiter = abackend.rate_limiter("tmdb", max_rps=40)
            await alimiter.apause(1.0)
            waited: float = await alimiter.areserve()
            result: sp.HealthResult = await sp.async_check_redis_health(abackend)
            del got, looked, waited, result

    del from_async


# --- seerrperf.flask --------------------------------------------------------------------


def flask_app() -> None:
    """The Flask integration as an app writes it."""
    from flask import Flask, Response

    from seerrperf.flask import PerProcess, Seerrperf, json_response

    app = Flask(__name__)
    app.config["SEERRPERF_DATABASE_URL"] = "postgresql://db/app"
    app.config["SEERRPERF_LOCK"] = "local"
    sp = Seerrperf(app, caches=CacheManager.seerr())
    later = Seerrperf()
    later.init_app(Flask("other"))
    app.register_blueprint(sp.health_blueprint(live_path="/live", version="1.0"))
    images: PerProcess[httpx.Client] = PerProcess(lambda: httpx.Client(timeout=5.0))

    @app.post("/request/<int:movie_id>")
    def create(movie_id: int) -> Response:
        movie: dict[str, Any] = sp.tmdb.get_movie(movie_id)
        with sp.lock(("movie", movie_id), timeout=1.0) as held:
            conn: psycopg.Connection[Any] = held or sp.connection()
            with conn.transaction():
                conn.execute("SELECT 1")
        pool: ConnectionPool[Any] = sp.pool
        with pool.connection() as other:
            other.execute("SELECT 1")
        client: httpx.Client = images()
        stats: dict[str, Any] = sp.stats()
        health: HealthResult = sp.check_health()
        del client, stats, health
        return json_response(movie, cache_control=CacheControl(no_store=True), status=201)

    sp.close(app)
    images.close()
