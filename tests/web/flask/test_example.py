"""examples/flask_app under real gunicorn (sync and gthread, 1 and 4 workers), on a real
PostgreSQL (this module's own, stopped and frozen at the end) and a FakeTmdb socket.
One server per configuration for the whole module."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import flask_app
from flask_app.schema import create_schema
from seerrperf import etag_for
from seerrperf.testing import EmbeddedPostgres, FakeTmdb
from tests.web._servers import Server, gunicorn

from .conftest import TOKEN

pytestmark = pytest.mark.slow  # real worker processes

_T = TypeVar("_T")

EXAMPLES = Path(flask_app.__file__).resolve().parents[1]
ADMIN = "admin-token"
POSTER = "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
CONFIGS = [("sync", 1), ("sync", 4), ("gthread", 1), ("gthread", 4)]
HEALTH_TIMEOUT = 1.0
BOUND = HEALTH_TIMEOUT + 0.5  # the issue's: readiness answers within its timeout + 0.5 s


def user(n: int) -> dict[str, str]:
    return {"X-User-Id": str(n)}


def rows(dsn: str, tmdb_id: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM media_request WHERE tmdb_id = %s", (tmdb_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def env(dsn: str, tmdb_url: str, metrics: Path) -> dict[str, str]:
    """The example's configuration, as Flask's from_prefixed_env reads it."""
    return {
        "FLASK_SEERRPERF_DATABASE_URL": dsn,
        "FLASK_SEERRPERF_TMDB_ACCESS_TOKEN": TOKEN,
        "FLASK_SEERRPERF_TMDB_BASE_URL": tmdb_url,
        "FLASK_SEERRPERF_HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
        "FLASK_IMAGE_BASE_URL": tmdb_url.removesuffix("/3") + "/t/p",
        "FLASK_ADMIN_TOKEN": ADMIN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"{k}-w{n}" for k, n in CONFIGS])
def served(
    request: pytest.FixtureRequest,
    own_server: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, FakeTmdb, str]]:
    worker_class, workers = request.param
    name = f"flask_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(own_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(own_server.dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        create_schema(conn)
    directory = tmp_path_factory.mktemp("flask-example")
    metrics = directory / "metrics"
    metrics.mkdir()
    fake = FakeTmdb(access_token=TOKEN, latency=0.05)  # keeps workers busy: requests spread
    try:
        with (
            fake.serve_in_thread() as tmdb_url,
            gunicorn(
                "flask_app.wsgi:app",
                workers=workers,
                worker_class=worker_class,
                env=env(dsn, tmdb_url, metrics),
                socket_dir=directory,
                pythonpath=[EXAMPLES],
                options=["--config", str(EXAMPLES / "flask_app" / "gunicorn_conf.py")],
            ) as server,
        ):
            yield server, fake, dsn
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

    def get(_: int) -> tuple[int, bytes]:
        response = server.client.get("/api/v1/tv/1399")
        return response.status_code, response.content

    answers = concurrently(40, get)
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1
    assert 1 <= fake.stats().requests_by_path["/3/tv/1399"] <= server.workers


def test_conditional_gets_and_image_headers(served: tuple[Server, FakeTmdb, str]) -> None:
    server, _, _ = served
    client = server.client
    movie = client.get("/api/v1/movie/604")
    assert movie.status_code == 200
    assert movie.headers["etag"] == etag_for(movie.content)
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    again = client.get("/api/v1/movie/604", headers={"If-None-Match": movie.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    changed = client.get("/api/v1/movie/604", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
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
    # werkzeug merges the slashes with a redirect: relative, so never to evil.example.
    merged = client.get("/imageproxy/w342//evil.example/x.jpg")
    assert (merged.status_code, merged.headers["location"]) == (
        308,
        "/imageproxy/w342/evil.example/x.jpg",
    )
    bad = client.get(merged.headers["location"])
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


def test_metrics_report_the_whole_fleet(served: tuple[Server, FakeTmdb, str]) -> None:
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
    assert "seerrperf_pool_connections" in text


# --- outages: this module's server stopped, then frozen -------------------------------


def timed_ready(server: Server) -> tuple[int, float, str, str]:
    start = time.monotonic()
    response = server.client.get("/api/health/ready")
    elapsed = time.monotonic() - start
    return (
        response.status_code,
        elapsed,
        response.headers["content-type"],
        response.headers["cache-control"],
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
    assert timed_ready(server)[0] == 200
    probes = server.workers  # at once: one per worker (a sync worker takes one at a time)
    own_server.stop()
    try:
        ready = concurrently(probes, lambda _: timed_ready(server))
        live = [server.client.get("/api/health").status_code for _ in range(probes)]
        post = server.client.post(
            "/api/v1/request", json={"mediaType": "tv", "mediaId": 1396}, headers=user(7)
        )
    finally:
        own_server.start()
    for status, elapsed, kind, cache in ready:
        assert (status, kind, cache) == (503, "application/health+json", "no-store")
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
        live = [server.client.get("/api/health").status_code for _ in range(probes)]
    finally:
        own_server.resume()
    for status, elapsed, _, cache in ready:
        assert (status, cache) == (503, "no-store")
        assert elapsed < BOUND
    assert live == [200] * probes
    wait_ready(server)
