"""Import-and-use smoke test for an installed seerrperf wheel (no dev dependencies).

Run from outside the source tree so ``import seerrperf`` finds the installed
package, not ``src/``.
"""

from __future__ import annotations

import asyncio
import sys

import httpx

import seerrperf
from seerrperf import (
    AsyncTmdbClient,
    CacheControl,
    CacheManager,
    TmdbClient,
    image_url,
    pool_factory,
)
from seerrperf.testing import FakeTmdb


async def main() -> None:
    assert "site-packages" in (seerrperf.__file__ or ""), seerrperf.__file__
    cc = CacheControl(public=True, max_age=60, stale_while_revalidate=600)
    assert CacheControl.parse(str(cc)) == cc
    caches = CacheManager.seerr()
    assert "tmdb" in caches.names()
    fake = FakeTmdb(api_key="smoke")
    http = httpx.AsyncClient(transport=fake.transport())
    tmdb_cache = caches.get_cache("tmdb")
    async with AsyncTmdbClient(api_key="smoke", http_client=http, cache=tmdb_cache) as tmdb:
        movie = await tmdb.get_movie(603)
        assert movie["title"] == "The Matrix", movie
        await tmdb.get_movie(603)
        assert tmdb.stats().upstream_calls == 1
    await http.aclose()
    with fake.serve_in_thread() as base_url, TmdbClient(api_key="smoke", base_url=base_url) as sync:
        assert sync.get_movie(603)["title"] == "The Matrix"
        assert image_url("/abc.jpg", base_url=sync.image_base_url()).endswith("/w500/abc.jpg")
    assert image_url("/abc.jpg").endswith("/w500/abc.jpg")
    pool = pool_factory("postgresql://app@localhost/app")  # built, never opened
    assert pool.max_size == 20
    await fastapi_app()
    flask_app()
    message = ""
    try:  # without the redis extra: a clear message, and nothing imported it before
        seerrperf.RedisBackend.from_url("redis://localhost:6379/0")
    except seerrperf.ConfigurationError as exc:
        message = str(exc)
    assert "seerrperf[redis]" in message, message or "RedisBackend worked without redis-py"
    print(f"seerrperf {seerrperf.__version__} smoke test passed ({sys.executable})")


async def fastapi_app() -> None:
    """seerrperf.fastapi from the wheel: the error contract, without a database."""
    from fastapi import FastAPI

    from seerrperf.fastapi import Seerrperf

    sp = Seerrperf(database_url="postgresql://app@localhost/app")  # never opened
    app = FastAPI()
    sp.install(app)
    app.include_router(sp.health_router())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smoke") as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
        missing = await client.get("/nowhere")
    assert live.status_code == 200, live
    assert ready.status_code == 503, ready  # not running: not ready
    assert missing.headers["cache-control"] == "no-store", missing.headers


def flask_app() -> None:
    """seerrperf.flask from the wheel: the error contract, without a database."""
    import logging

    from flask import Flask

    from seerrperf.flask import Seerrperf

    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)  # it cannot connect: on purpose
    app = Flask("smoke")
    app.config["SEERRPERF_DATABASE_URL"] = "postgresql://app@localhost:9/app"  # never reached
    app.config["SEERRPERF_HEALTH_TIMEOUT"] = 0.5
    sp = Seerrperf(app)
    app.register_blueprint(sp.health_blueprint())
    client = app.test_client()
    live = client.get("/health/live")
    ready = client.get("/health/ready")
    missing = client.get("/nowhere")
    sp.close()
    assert live.status_code == 200, live
    assert ready.status_code == 503, ready  # no database: not ready
    assert missing.headers["Cache-Control"] == "no-store", missing.headers


if __name__ == "__main__":
    asyncio.run(main())
