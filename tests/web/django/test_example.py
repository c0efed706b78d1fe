"""examples/django_app under real servers -- gunicorn sync and gthread (1 and 4 workers) and
uvicorn (ASGI) -- on a real PostgreSQL (this module's own, stopped and frozen at the end) and
a FakeTmdb socket, with Django's pool and without, CONN_HEALTH_CHECKS on and off."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from seerrperf import etag_for
from seerrperf.testing import EmbeddedPostgres, FakeTmdb
from tests.web._servers import SRC, Server, gunicorn, uvicorn

from .conftest import TOKEN

pytestmark = pytest.mark.slow  # real worker processes

_T = TypeVar("_T")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ADMIN = "admin-token"
POSTER = "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
HEALTH_TIMEOUT = 1.0
BOUND = HEALTH_TIMEOUT + 0.5  # the issue's: readiness answers within its timeout + 0.5 s


@dataclass(frozen=True)
class Config:
    server: str  # "sync", "gthread" (gunicorn) or "uvicorn"
    workers: int
    health_checks: bool  # CONN_HEALTH_CHECKS
    pool: bool = True  # Django's psycopg pool

    @property
    def id(self) -> str:
        checks = "checks" if self.health_checks else "nochecks"
        return f"{self.server}-w{self.workers}-{checks}{'' if self.pool else '-nopool'}"


CONFIGS = [
    Config("sync", 1, health_checks=True),
    Config("sync", 4, health_checks=False),
    Config("gthread", 1, health_checks=False),
    Config("gthread", 4, health_checks=True),
    Config("uvicorn", 2, health_checks=True),
    Config("sync", 2, health_checks=True, pool=False),
]


def user(n: int) -> dict[str, str]:
    return {"X-User-Id": str(n)}


def rows(dsn: str, tmdb_id: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM media_request WHERE tmdb_id = %s", (tmdb_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def env(config: Config, dsn: str, tmdb_url: str, metrics: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": dsn,
        "DJANGO_SETTINGS_MODULE": "django_app.settings",
        "DJANGO_ALLOWED_HOSTS": "app",
        "DJANGO_CONN_HEALTH_CHECKS": "1" if config.health_checks else "0",
        "DJANGO_DB_POOL": "1" if config.pool else "0",
        "TMDB_API_TOKEN": TOKEN,
        "TMDB_BASE_URL": tmdb_url,
        "SEERRPERF_HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
        "IMAGE_BASE_URL": tmdb_url.removesuffix("/3") + "/t/p",
        "ADMIN_TOKEN": ADMIN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


def migrate(environment: dict[str, str]) -> None:
    path = os.pathsep.join([str(SRC), str(EXAMPLES)])
    done = subprocess.run(
        [sys.executable, "-m", "django_app", "migrate", "--no-input"],
        env={**os.environ, **environment, "PYTHONPATH": path},
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module", params=CONFIGS, ids=[c.id for c in CONFIGS])
def served(
    request: pytest.FixtureRequest,
    own_server: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, FakeTmdb, str]]:
    config: Config = request.param
    name = f"django_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(own_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(own_server.dsn, dbname=name)
    directory = tmp_path_factory.mktemp("django-example")
    metrics = directory / "metrics"
    metrics.mkdir()
    fake = FakeTmdb(access_token=TOKEN, latency=0.05)  # keeps workers busy: requests spread
    try:
        with fake.serve_in_thread() as tmdb_url:
            environment = env(config, dsn, tmdb_url, metrics)
            migrate(environment)
            if config.server == "uvicorn":
                server = uvicorn(
                    "django_app.asgi:application",
                    workers=config.workers,
                    env=environment,
                    socket_dir=directory,
                    pythonpath=[EXAMPLES],
                    options=["--lifespan", "off"],
                )
            else:
                server = gunicorn(
                    "django_app.wsgi",
                    workers=config.workers,
                    worker_class=config.server,
                    env=environment,
                    socket_dir=directory,
                    pythonpath=[EXAMPLES],
                    options=["--config", str(EXAMPLES / "django_app" / "gunicorn_conf.py")],
                )
            with server as running:
                yield running, fake, dsn
    finally:
        with psycopg.connect(own_server.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def concurrently(n: int, call: Callable[[int], _T]) -> list[_T]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_twenty_concurrent_duplicates_make_one_row(served: tuple[Server, FakeTmdb, str]) -> None:
    server, _, dsn = served

    def post(n: int) -> int:
        body = {"mediaType": "movie", "mediaId": 603}
        return server.client.post("/api/v1/request", json=body, headers=user(n + 1)).status_code

    statuses = concurrently(20, post)
    assert sorted(statuses) == [201] + [409] * 19
    assert rows(dsn, 603) == 1


def test_repeated_gets_ask_tmdb_at_most_once_per_worker(
    served: tuple[Server, FakeTmdb, str],
) -> None:
    server, fake, _ = served

    def get(n: int) -> tuple[int, bytes]:
        path = "/api/v1/tv/1399" if n % 2 else "/api/v1/async/movie/27205"
        response = server.client.get(path)
        return response.status_code, response.content

    answers = concurrently(40, get)
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 2
    by_path = fake.stats().requests_by_path
    assert 1 <= by_path["/3/tv/1399"] <= server.workers
    assert 1 <= by_path["/3/movie/27205"] <= server.workers


def test_conditional_gets_and_image_headers(served: tuple[Server, FakeTmdb, str]) -> None:
    client = served[0].client
    movie = client.get("/api/v1/movie/604")
    assert movie.status_code == 200
    assert movie.headers["etag"] == etag_for(movie.content)
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    again = client.get("/api/v1/movie/604", headers={"If-None-Match": movie.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert client.get("/api/v1/movie/604", headers={"If-None-Match": '"x"'}).status_code == 200
    poster = client.get(f"/imageproxy/w342{POSTER}")
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/jpeg"
    assert poster.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert poster.headers["etag"] == etag_for(poster.content)
    assert poster.headers["x-content-type-options"] == "nosniff"
    cached = client.get(
        f"/imageproxy/w342{POSTER}", headers={"If-None-Match": poster.headers["etag"]}
    )
    assert cached.status_code == 304
    bad = client.get("/imageproxy/w342/evil.example/x.jpg")
    assert (bad.status_code, bad.headers["cache-control"]) == (400, "no-store")


def test_errors_are_no_store_and_never_echo(served: tuple[Server, FakeTmdb, str]) -> None:
    client = served[0].client
    anonymous = client.post("/api/v1/request", json={"mediaType": "movie", "mediaId": 605})
    assert (anonymous.status_code, anonymous.headers["cache-control"]) == (401, "no-store")
    invalid = client.post(
        "/api/v1/request", json={"mediaType": "movie", "mediaId": "s3cr3t-input"}, headers=user(1)
    )
    assert invalid.status_code == 422
    assert "s3cr3t-input" not in invalid.text
    too_large = client.post("/api/v1/request", content=b" " * 20_000, headers=user(1))
    assert too_large.status_code == 413
    assert too_large.headers["content-type"] == "application/problem+json"
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.headers["cache-control"]) == (404, "no-store")
    wrong_method = client.get("/api/v1/request")
    assert (wrong_method.status_code, wrong_method.headers["cache-control"]) == (405, "no-store")


def test_metrics_and_stats(served: tuple[Server, FakeTmdb, str]) -> None:
    server, _, _ = served
    for _ in range(3 * server.workers):
        assert server.client.get("/api/v1/movie/550").status_code == 200
    deadline = time.monotonic() + 60
    while True:  # the workers copy their figures every second; the answering one at once
        text = server.client.get("/metrics").text
        requests = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("seerrperf_tmdb_requests_total")
        )
        if requests >= 3 * server.workers or time.monotonic() > deadline:
            break
    assert requests >= 3 * server.workers
    stats = server.client.get("/api/debug/stats", headers={"X-Admin-Token": ADMIN})
    assert stats.status_code == 200
    assert "lock" in stats.json()["locks"]
    assert server.client.get("/api/debug/stats").status_code == 403


# --- outages: this module's server stopped, then frozen -------------------------------


def timed_ready(server: Server) -> tuple[int, float, str, str, str]:
    start = time.monotonic()
    response = server.client.get("/api/health/ready")
    elapsed = time.monotonic() - start
    return (
        response.status_code,
        elapsed,
        response.headers["content-type"],
        response.headers["cache-control"],
        response.text,
    )


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    for _ in range(server.workers):  # a few workers' pools, not only the first one's
        while server.client.get("/api/health/ready").status_code != 200:  # each waits <= 1 s
            assert time.monotonic() < deadline, "readiness did not come back"


def test_a_stopped_database_fails_readiness_in_time_and_posts_write_nothing(
    served: tuple[Server, FakeTmdb, str], own_server: EmbeddedPostgres
) -> None:
    server, _, dsn = served
    wait_ready(server)
    probes = server.workers  # at once: one per worker (a sync worker takes one at a time)
    own_server.stop()
    try:
        ready = concurrently(probes, lambda _: timed_ready(server))
        live = [server.client.get("/api/health/live").status_code for _ in range(probes)]
        post = server.client.post(
            "/api/v1/request", json={"mediaType": "tv", "mediaId": 1396}, headers=user(7)
        )
    finally:
        own_server.start()
    for status, elapsed, kind, cache, body in ready:
        assert (status, kind, cache) == (503, "application/health+json", "no-store"), body
        assert elapsed < BOUND
    assert live == [200] * probes
    assert post.status_code == 503
    assert post.headers["content-type"] == "application/problem+json"
    assert post.headers["cache-control"] == "no-store"
    assert int(post.headers["retry-after"]) >= 1
    assert post.json()["type"].endswith("#database-unavailable")
    wait_ready(server)
    assert rows(dsn, 1396) == 0  # nothing half-written


def test_a_frozen_database_fails_readiness_in_time(
    served: tuple[Server, FakeTmdb, str], own_server: EmbeddedPostgres
) -> None:
    server, _, _ = served
    wait_ready(server)
    probes = server.workers
    own_server.pause()
    try:
        ready = concurrently(probes, lambda _: timed_ready(server))
        again = concurrently(probes, lambda _: timed_ready(server))  # idle connections now
        live = [server.client.get("/api/health/live").status_code for _ in range(probes)]
    finally:
        own_server.resume()
    for status, elapsed, _, cache, body in ready + again:
        assert (status, cache) == (503, "no-store"), body
        assert elapsed < BOUND
    assert live == [200] * probes
    wait_ready(server)
