"""Seerrperf in a real app: uvicorn on a socket, a real PostgreSQL, FakeTmdb on a socket."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from media_app import serve
from seerrperf import (
    CacheManager,
    ConfigurationError,
    PoolSettings,
    RedisRateLimiter,
    SeerrperfError,
    cached,
)
from seerrperf.fastapi import AdvisoryLock, Caches, Lock, Pool, Seerrperf, Tmdb
from seerrperf.testing import EmbeddedPostgres, FakeTmdb
from tests._support import SENTINEL

pytestmark = pytest.mark.anyio

HEALTH_TIMEOUT = 1.0
TOKEN = "tmdb-token"


def build(sp: Seerrperf, app: FastAPI) -> FastAPI:
    """Routes that use every provider."""
    sp.install(app)
    app.include_router(sp.health_router(version="1.2.3"))
    squares = sp.caches.get_cache("squares", ttl=60)

    @cached(squares)
    async def square(n: int) -> int:
        return n * n

    @app.get("/db")
    async def db(pool: Pool) -> dict[str, Any]:
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT 41 + 1")).fetchone()
        return {"answer": row[0] if row else None, "pool": pool.name}

    @app.get("/movie/{movie_id}")
    async def movie(movie_id: int, tmdb: Tmdb) -> dict[str, Any]:
        return {"title": (await tmdb.get_movie(movie_id))["title"]}

    @app.get("/locked/{key}")
    async def locked(key: str, lock: Lock, adv: AdvisoryLock) -> dict[str, Any]:
        async with lock(key, timeout=1.0):
            held_locally = lock.locked(key)
        async with adv(key, timeout=1.0) as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            ).fetchone()
        return {"local": held_locally, "advisory_locks": row[0] if row else 0}

    @app.get("/square/{n}")
    async def get_square(n: int, caches: Caches) -> dict[str, Any]:
        return {"square": await square(n), "caches": caches.names()}

    return app


@asynccontextmanager
async def running(sp: Seerrperf, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    lifespan = (lambda app: sp.lifespan(app, **overrides)) if overrides else sp.lifespan
    app = build(sp, FastAPI(lifespan=lifespan))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def test_the_lifespan_opens_everything_and_the_providers_serve_it(postgres_dsn: str) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    sp = Seerrperf(
        database_url=postgres_dsn,
        pool=PoolSettings(min_size=1, max_size=4, application_name="t-fastapi"),
        pool_name="fastapi-test",
        tmdb_access_token=TOKEN,
        health_timeout=HEALTH_TIMEOUT,
        lock_namespace="tests-fastapi",
    )
    assert repr(sp).startswith("<Seerrperf stopped, tmdb")
    with pytest.raises(SeerrperfError, match="not running"):
        _ = sp.pool
    async with fake.serve() as tmdb_url, running(sp, tmdb_base_url=tmdb_url) as client:
        assert sp.running
        assert sp.config.tmdb_base_url == tmdb_url
        db = (await client.get("/db")).json()
        first = await client.get("/movie/603")
        again = await client.get("/movie/603")
        locked = (await client.get("/locked/603")).json()
        squares = [(await client.get("/square/7")).json() for _ in range(2)]
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        stats = sp.stats()
    assert db == {"answer": 42, "pool": "fastapi-test"}
    assert first.json() == again.json() == {"title": "The Matrix"}
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    assert locked == {"local": True, "advisory_locks": 1}
    assert squares[0] == squares[1] == {"square": 49, "caches": ["squares", "tmdb"]}
    assert (live.status_code, live.json()) == (200, {"status": "pass"})
    assert live.headers["content-type"] == "application/health+json"
    assert live.headers["cache-control"] == "no-store"
    assert ready.status_code == 200
    assert ready.headers["content-type"] == "application/health+json"
    assert ready.headers["cache-control"] == "no-store"
    assert ready.json()["status"] == "pass"
    assert ready.json()["version"] == "1.2.3"
    assert stats["pool"]["name"] == "fastapi-test"
    assert stats["tmdb"]["upstream_calls"] == 1
    assert set(stats["locks"]) == {"lock", "advisory_lock"}
    assert stats["caches"]["squares"]["hits"] == 1
    # Closed with the lifespan; the caches were emptied, the objects are gone.
    assert repr(sp).startswith("<Seerrperf stopped")
    assert len(sp.caches.get_cache("squares")) == 0
    assert sp.stats().keys() == {"collected_at", "caches"}
    with pytest.raises(SeerrperfError):
        _ = sp.tmdb


async def test_composed_with_the_apps_own_lifespan_and_run_again(postgres_dsn: str) -> None:
    sp = Seerrperf(database_url=postgres_dsn, caches=CacheManager.seerr())
    steps: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with sp.lifespan(app):
            async with sp.pool.connection() as conn:
                await conn.execute("SELECT 1")
            steps.append("started")
            yield
            steps.append("stopping")

    for _ in range(2):  # a restarted app (tests, --reload) gets fresh objects
        app = build(sp, FastAPI(lifespan=lifespan))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/db")).json()["answer"] == 42
            tmdb = await client.get("/movie/603")
    assert steps == ["started", "stopping"] * 2
    assert tmdb.status_code == 500  # no TMDB credential: a programming error, not an outage
    assert "tmdb" in sp.caches.names()  # the seerr preset was kept


async def test_one_lifespan_at_a_time_and_overrides_are_checked(postgres_dsn: str) -> None:
    sp = Seerrperf(database_url=postgres_dsn)
    app = FastAPI()
    async with sp.lifespan(app):
        with pytest.raises(SeerrperfError, match="already running"):
            async with sp.lifespan(app):
                pass
    with pytest.raises(ConfigurationError, match="health_timeout"):
        async with sp.lifespan(app, health_timeout=-1):
            pass
    with pytest.raises(ConfigurationError, match="unknown setting"):
        async with sp.lifespan(app, caches=None):
            pass
    assert not sp.running


def test_configuration_is_checked_at_construction_and_never_echoes_secrets() -> None:
    bad: dict[str, Any]
    for bad in (
        {"tmdb_api_key": SENTINEL, "tmdb_access_token": SENTINEL},
        {"tmdb_access_token": f"{SENTINEL} x"},
        {"health_timeout": 0},
        {"max_body_size": -1},
        {"caches": {}},
        {"tmdb_options": {"api_key": SENTINEL}},
    ):
        with pytest.raises(ConfigurationError) as caught:
            Seerrperf(**bad)
        assert SENTINEL not in str(caught.value)
    sp = Seerrperf(database_url=f"postgresql://u:{SENTINEL}@h/d", tmdb_access_token=SENTINEL)
    assert SENTINEL not in repr(sp) + repr(sp.config)


def test_from_env() -> None:
    sp = Seerrperf.from_env(
        {"DATABASE_URL": "postgresql://db/app", "TMDB_API_TOKEN": SENTINEL},
        health_timeout=1.5,
        caches=CacheManager.seerr(),
    )
    assert sp.config.database_url == "postgresql://db/app"
    assert sp.config.tmdb_access_token == SENTINEL
    assert sp.config.health_timeout == 1.5
    assert "plextv" in sp.caches.names()


# --- outages on a real server ---------------------------------------------------------


async def test_a_stopped_and_a_frozen_database_answer_503_and_liveness_stays_200(
    own_server: EmbeddedPostgres,
) -> None:
    sp = Seerrperf(
        database_url=own_server.dsn,
        pool=PoolSettings(min_size=1, max_size=2, timeout=HEALTH_TIMEOUT),
        health_timeout=HEALTH_TIMEOUT,
    )
    async with running(sp) as client:
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/db")).status_code == 200
        await anyio.to_thread.run_sync(own_server.pause)
        try:
            start = time.monotonic()
            frozen = await client.get("/health/ready")
            frozen_after = time.monotonic() - start
            frozen_live = await client.get("/health/live")
            # A query of a route is not bounded here yet: that is the pool's
            # query deadline (issue 13 item 4), not this integration's.
        finally:
            await anyio.to_thread.run_sync(own_server.resume)
        await anyio.to_thread.run_sync(own_server.stop)
        try:
            start = time.monotonic()
            down = await client.get("/health/ready")
            down_after = time.monotonic() - start
            down_live = await client.get("/health/live")
            query_down = await client.get("/db")
        finally:
            await anyio.to_thread.run_sync(own_server.start)
        with anyio.fail_after(30):  # each probe waits at most its timeout: no sleeping
            while (back := await client.get("/health/ready")).status_code != 200:
                assert back.status_code == 503
    for response, took in ((frozen, frozen_after), (down, down_after)):
        assert response.status_code == 503
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["status"] == "fail"
        assert took < HEALTH_TIMEOUT + 0.5
    assert frozen_live.status_code == down_live.status_code == 200
    assert query_down.status_code == 503, query_down.text
    assert query_down.headers["content-type"] == "application/problem+json"
    assert query_down.headers["cache-control"] == "no-store"
    assert query_down.headers["retry-after"] == "5"
    assert query_down.json()["type"].endswith("#database-unavailable")


async def test_a_tmdb_outage_answers_503(postgres_dsn: str) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    sp = Seerrperf(
        database_url=postgres_dsn, tmdb_access_token=TOKEN, tmdb_options={"max_retries": 0}
    )
    async with fake.serve() as tmdb_url, running(sp, tmdb_base_url=tmdb_url) as client:
        fake.outage = True
        response = await client.get("/movie/604")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("#upstream-unavailable")


async def test_a_plain_starlette_app(postgres_dsn: str) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    sp = Seerrperf(database_url=postgres_dsn)

    async def answer(request: Request) -> Response:
        async with sp.pool.connection() as conn:
            row = await (await conn.execute("SELECT 42")).fetchone()
        return JSONResponse({"answer": row[0] if row else None})

    health = sp.health_router(live_path="/live", ready_path="/ready")
    app = Starlette(
        lifespan=sp.lifespan,
        routes=[Route("/answer", answer), Mount("/health", app=health)],
    )
    sp.install(app)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        answered = await client.get("/answer")
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
        missing = await client.get("/nowhere")
    assert answered.json() == {"answer": 42}
    assert (ready.status_code, live.status_code) == (200, 200)
    assert ready.headers["content-type"] == "application/health+json"
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == "no-store"


async def test_a_tmdb_argument_the_client_refuses_stops_the_start(postgres_dsn: str) -> None:
    sp = Seerrperf(database_url=postgres_dsn, tmdb_api_key="k", tmdb_options={"timeout": -1})
    with pytest.raises(ConfigurationError, match="timeout"):
        async with sp.lifespan(FastAPI()):
            pass
    assert repr(sp).startswith("<Seerrperf stopped")


async def test_two_starts_at_once_cannot_both_run(postgres_dsn: str) -> None:
    sp = Seerrperf(database_url=postgres_dsn)
    outcomes: list[str] = []
    release = anyio.Event()

    async def start() -> None:
        try:
            async with sp.lifespan(FastAPI()):
                outcomes.append("ran")
                await release.wait()
        except SeerrperfError:
            outcomes.append("refused")
            release.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            tg.start_soon(start)
    assert sorted(outcomes) == ["ran", "refused"]


# --- REDIS_URL: the shared tier, the fleet's TMDB budget, Redis in readiness -------------


async def test_with_a_redis_url_every_cache_is_shared_and_readiness_reports_redis(
    postgres_dsn: str, redis_url: str
) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    sp = Seerrperf.from_env(
        {"DATABASE_URL": postgres_dsn, "TMDB_API_TOKEN": TOKEN, "REDIS_URL": redis_url},
        health_timeout=HEALTH_TIMEOUT,
        lock_namespace="tests-fastapi-redis",
    )
    async with fake.serve() as tmdb_url, running(sp, tmdb_base_url=tmdb_url) as client:
        backend = sp.redis
        assert backend is not None
        assert backend.namespace == "tests-fastapi-redis"
        assert sp.caches.shared is backend
        assert sp.caches.get_cache("tmdb").shared is not None
        assert isinstance(sp.tmdb._transport.throttle, RedisRateLimiter)
        first = await client.get("/movie/603")
        # Another worker of the fleet finds it in the shared tier: no upstream call.
        sp.caches.get_cache("tmdb")._clear_local()
        again = await client.get("/movie/603")
        ready = await client.get("/health/ready")
        stats = sp.stats()
    assert first.json() == again.json() == {"title": "The Matrix"}
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    assert ready.status_code == 200
    assert {key.split(":")[0] for key in ready.json()["checks"]} == {"postgres", "redis"}
    assert stats["redis"]["namespace"] == "tests-fastapi-redis"
    assert stats["caches"]["tmdb"]["shared_hits"] == 1
    assert sp.caches.shared is None  # detached with the lifespan; the backend is closed


async def test_redis_down_is_a_warning_not_a_failure(postgres_dsn: str) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    sp = Seerrperf(
        database_url=postgres_dsn,
        tmdb_access_token=TOKEN,
        health_timeout=HEALTH_TIMEOUT,
        redis_url=f"redis://:{SENTINEL}@127.0.0.1:9/0",  # nothing listens on port 9
    )
    async with fake.serve() as tmdb_url, running(sp, tmdb_base_url=tmdb_url) as client:
        movies = [await client.get("/movie/603") for _ in range(3)]
        ready = await client.get("/health/ready")
        stats = sp.stats()
    assert [m.status_code for m in movies] == [200, 200, 200]  # no request fails for Redis
    assert fake.stats().requests_by_path["/3/movie/603"] == 1  # the local tier still works
    assert (ready.status_code, ready.json()["status"]) == (200, "warn")
    assert SENTINEL not in ready.text
    assert stats["redis"]["fallbacks"] >= 1
