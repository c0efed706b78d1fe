"""SEERRPERF_REDIS_URL: each process's backend, the shared tier, the fleet's limiter, readiness."""

from __future__ import annotations

import pytest
from flask import Flask

from seerrperf import CacheManager, ConfigurationError, RedisRateLimiter
from seerrperf.flask import Seerrperf
from seerrperf.testing import FakeTmdb
from tests._support import SENTINEL

from .conftest import TOKEN


def make(dsn: str, tmdb_url: str, redis_url: str) -> tuple[Flask, Seerrperf]:
    app = Flask(__name__)
    app.config.update(
        SEERRPERF_DATABASE_URL=dsn,
        SEERRPERF_POOL={"min_size": 1, "max_size": 2},
        SEERRPERF_TMDB_ACCESS_TOKEN=TOKEN,
        SEERRPERF_TMDB_BASE_URL=tmdb_url,
        SEERRPERF_REDIS_URL=redis_url,
        SEERRPERF_LOCK_NAMESPACE="tests-flask-redis",
        SEERRPERF_HEALTH_TIMEOUT=1.0,
    )
    sp = Seerrperf(app, caches=CacheManager())
    app.register_blueprint(sp.health_blueprint())

    @app.get("/movie/<int:movie_id>")
    def movie(movie_id: int) -> dict[str, object]:
        return {"title": sp.tmdb.get_movie(movie_id)["title"]}

    return app, sp


def test_the_process_makes_one_backend_and_shares_the_caches(
    postgres_dsn: str, redis_url: str, fake_tmdb: tuple[FakeTmdb, str]
) -> None:
    fake, tmdb_url = fake_tmdb
    app, sp = make(postgres_dsn, tmdb_url, redis_url)
    client = app.test_client()
    try:
        before = fake.stats().requests_by_path.get("/3/movie/605", 0)
        assert client.get("/movie/605").get_json() == {"title": "The Matrix Revolutions"}
        with app.app_context():
            assert sp.caches.shared is not None
            assert sp.caches.shared.namespace == "tests-flask-redis"
            assert isinstance(sp.tmdb._transport.throttle, RedisRateLimiter)
            sp.caches.get_cache("tmdb")._clear_local()  # as another worker would start
        assert client.get("/movie/605").status_code == 200
        assert fake.stats().requests_by_path["/3/movie/605"] == before + 1  # a shared hit
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert {key.split(":")[0] for key in ready.get_json()["checks"]} == {"postgres", "redis"}
        with app.app_context():
            stats = sp.stats()
        assert stats["redis"]["namespace"] == "tests-flask-redis"
        assert stats["caches"]["tmdb"]["shared_hits"] == 1
    finally:
        sp.close()
    assert sp.caches.shared is None  # closed with the process's objects


def test_redis_down_warns_and_no_request_fails(
    postgres_dsn: str, fake_tmdb: tuple[FakeTmdb, str]
) -> None:
    _, tmdb_url = fake_tmdb
    app, sp = make(postgres_dsn, tmdb_url, f"redis://:{SENTINEL}@127.0.0.1:9/0")
    client = app.test_client()
    try:
        assert [client.get("/movie/606").status_code for _ in range(3)] == [200] * 3
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.get_json()["status"]) == (200, "warn")
        assert SENTINEL not in ready.get_data(as_text=True)
    finally:
        sp.close()


def test_a_bad_redis_url_is_refused_at_init() -> None:
    app = Flask(__name__)
    app.config["SEERRPERF_REDIS_URL"] = f"http://:{SENTINEL}@cache"
    with pytest.raises(ConfigurationError, match="SEERRPERF_REDIS_URL") as caught:
        Seerrperf(app)
    assert SENTINEL not in str(caught.value)
