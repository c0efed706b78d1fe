"""The example app (examples/media_app) end to end: uvicorn, PostgreSQL and FakeTmdb on sockets."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from media_app import Settings, create_app, serve
from media_app.services import HEALTH_TIMEOUT
from seerrperf import ConfigurationError, etag_for
from seerrperf.testing import EmbeddedPostgres, FakeTmdb
from tests._support import SENTINEL, uvicorn_workers

pytestmark = pytest.mark.anyio

ADMIN = {"X-Admin-Token": SENTINEL}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def user(n: int) -> dict[str, str]:
    return {"X-User-Id": str(n)}


def body(media_type: str = "movie", media_id: int = 603) -> dict[str, Any]:
    return {"mediaType": media_type, "mediaId": media_id}


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[str]:
    """A fresh database per test: the app's tables have fixed names."""
    name = f"media_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(postgres_dsn, dbname=name)
        finally:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@asynccontextmanager
async def running(dsn: str, **settings: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FakeTmdb]]:
    """The app on 127.0.0.1 with a FakeTmdb of its own; yields a client and the fake."""
    fake = FakeTmdb(api_key="tmdb-key")
    async with fake.serve() as tmdb:
        app = create_app(
            Settings(
                database_url=dsn,
                tmdb_api_key="tmdb-key",
                tmdb_base_url=tmdb,
                tmdb_image_base_url=tmdb.removesuffix("/3") + "/t/p",
                admin_token=settings.pop("admin_token", SENTINEL),
                **settings,
            )
        )
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield client, fake


def active_rows(dsn: str, tmdb_id: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM media_request WHERE tmdb_id = %s AND status = 'pending'",
            (tmdb_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


# --- POST /api/v1/request -------------------------------------------------------------


@pytest.mark.parametrize("lock_mode", ["local", "advisory"])
async def test_fifty_concurrent_duplicates_make_one_row_and_49_conflicts(
    database: str, lock_mode: str
) -> None:
    statuses: list[int] = []
    async with running(database, lock_mode=lock_mode) as (client, fake):

        async def post(n: int) -> None:
            response = await client.post("/api/v1/request", json=body("tv", 1399), headers=user(n))
            statuses.append(response.status_code)
            if response.status_code == 409:
                assert response.json() == {"detail": "this title is requested already"}
                assert response.headers["cache-control"] == "no-store"

        async with anyio.create_task_group() as tg:
            for n in range(1, 51):
                tg.start_soon(post, n)
        stats = (await client.get("/api/debug/stats", headers=ADMIN)).json()
    assert sorted(statuses) == [201] + [409] * 49
    assert active_rows(database, 1399) == 1
    assert fake.stats().requests_by_path["/3/tv/1399"] == 1  # 50 lookups, one upstream call
    assert stats["locks"]["requests"]["acquisitions"] >= 1


async def test_unique_index_turns_a_bypassed_lock_into_409(database: str) -> None:
    async with running(database) as (client, _):
        assert (
            await client.post("/api/v1/request", json=body(), headers=user(1))
        ).status_code == 201
        # Another writer inserts without the lock or the check: the index refuses it.
        with psycopg.connect(database) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO media_request (media_type, tmdb_id, title, requested_by)"
                " VALUES ('movie', 603, 'x', 1)"
            )
    assert active_rows(database, 603) == 1


async def test_new_request_answers_and_validates(database: str) -> None:
    async with running(database, movie_limit=1) as (client, fake):
        fake.deleted_ids = {77}
        created = await client.post("/api/v1/request", json=body(), headers=user(5))
        assert created.status_code == 201
        assert created.headers["cache-control"] == "no-store"
        assert {k: v for k, v in created.json().items() if k not in {"id", "createdAt"}} == {
            "mediaType": "movie",
            "mediaId": 603,
            "title": "The Matrix",
            "status": "pending",
            "requestedBy": 5,
        }
        over_quota = await client.post("/api/v1/request", json=body(media_id=604), headers=user(5))
        assert over_quota.status_code == 403
        for bad in (
            body("book"),
            body(media_id=0),
            {"mediaType": "movie", "mediaId": "603"},
            {**body(), "extra": 1},
            {"mediaType": "movie"},
        ):
            response = await client.post("/api/v1/request", json=bad, headers=user(6))
            assert response.status_code == 422, bad
            assert response.headers["cache-control"] == "no-store"
        unknown = await client.post("/api/v1/request", json=body(media_id=77), headers=user(6))
        assert unknown.status_code == 422
        assert (await client.post("/api/v1/request", json=body())).status_code == 401
        anonymous = await client.post("/api/v1/request", json=body(), headers=user(0))
        assert anonymous.status_code == 401


# --- profile ----------------------------------------------------------------------------


@pytest.mark.parametrize("naive", [False, True], ids=["seerrperf", "naive"])
async def test_profile_requests_show_a_failing_tmdb_id_as_missing_details(
    database: str, naive: bool
) -> None:
    async with running(database, naive=naive) as (client, fake):
        for media_type, media_id in (("movie", 603), ("movie", 604), ("tv", 1399)):
            created = await client.post(
                "/api/v1/request", json=body(media_type, media_id), headers=user(3)
            )
            assert created.status_code == 201
        if not naive:  # forget the details fetched while creating the requests
            flushed = await client.post("/api/v1/settings/cache/tmdb/flush", headers=ADMIN)
            assert flushed.status_code == 204
        fake.deleted_ids = {604}
        page = await client.get("/api/profile/requests", headers=user(3))
    assert page.status_code == 200
    assert page.headers["cache-control"] == "private, no-cache"
    assert page.headers["vary"] == "X-User-Id"
    data = page.json()
    assert data["pageInfo"] == {"results": 3, "take": 20, "skip": 0}
    media = {(r["mediaType"], r["mediaId"]): r["media"] for r in data["results"]}
    assert media[("movie", 604)] is None
    assert media[("movie", 603)]["title"] == "The Matrix"
    assert media[("tv", 1399)]["title"] == "Game of Thrones"


async def test_profile_stats_in_one_answer(database: str) -> None:
    async with running(database, movie_limit=4, series_limit=2) as (client, _):
        empty = (await client.get("/api/profile/stats", headers=user(9))).json()
        for media_type, media_id in (("movie", 603), ("movie", 604), ("tv", 1399)):
            await client.post("/api/v1/request", json=body(media_type, media_id), headers=user(9))
        response = await client.get("/api/profile/stats", headers=user(9))
        again = await client.get(
            "/api/profile/stats", headers={**user(9), "If-None-Match": response.headers["etag"]}
        )
    assert empty["total"] == 0
    assert empty["quota"]["movie"] == {"limit": 4, "used": 0, "remaining": 4}
    assert response.json() == {
        "total": 3,
        "byType": {"movie": 2, "tv": 1},
        "byStatus": {"pending": 3},
        "quota": {
            "movie": {"limit": 4, "used": 2, "remaining": 2},
            "tv": {"limit": 2, "used": 1, "remaining": 1},
        },
    }
    assert response.headers["cache-control"] == "private, no-cache"
    assert again.status_code == 304


# --- admin ------------------------------------------------------------------------------


async def test_recent_list_is_cached_and_invalidated_by_a_new_request(database: str) -> None:
    async with running(database) as (client, _):
        await client.post("/api/v1/request", json=body(), headers=user(1))
        first = await client.get("/api/admin/requests/recent", headers=ADMIN)
        second = await client.get("/api/admin/requests/recent", headers=ADMIN)
        await client.post("/api/v1/request", json=body("tv", 1399), headers=user(2))
        third = await client.get("/api/admin/requests/recent", headers=ADMIN)
        queries = (await client.get("/api/debug/stats", headers=ADMIN)).json()["caches"]["queries"]
    assert [r["mediaId"] for r in first.json()["results"]] == [603]
    assert second.json() == first.json()
    assert [r["mediaId"] for r in third.json()["results"]] == [1399, 603]
    assert (queries["hits"], queries["misses"]) == (1, 2)
    assert first.headers["cache-control"] == "private, max-age=10, stale-while-revalidate=50"


async def test_admin_routes_need_the_token(database: str) -> None:
    async with running(database) as (client, _):
        for method, path in (
            ("GET", "/api/debug/stats"),
            ("GET", "/api/admin/requests/recent"),
            ("GET", "/api/v1/settings/cache"),
            ("POST", "/api/v1/settings/cache/tmdb/flush"),
        ):
            missing = await client.request(method, path)
            wrong = await client.request(method, path, headers={"X-Admin-Token": "nope"})
            assert (missing.status_code, wrong.status_code) == (401, 403), path
            assert SENTINEL not in missing.text + wrong.text
        stats = await client.get("/api/debug/stats", headers=ADMIN)
        caches = await client.get("/api/v1/settings/cache", headers=ADMIN)
        unknown = await client.post("/api/v1/settings/cache/nope/flush", headers=ADMIN)
    assert stats.status_code == 200
    assert stats.headers["cache-control"] == "no-store"
    snapshot = stats.json()
    assert snapshot["build"] == "seerrperf"
    assert {"pool", "caches", "tmdb", "locks"} <= snapshot.keys()
    assert snapshot["pool"]["name"]
    assert [c["id"] for c in caches.json()["apiCaches"]] == ["tmdb", "queries", "images"]
    assert set(caches.json()["apiCaches"][0]["stats"]) == {
        "hits",
        "misses",
        "keys",
        "ksize",
        "vsize",
    }
    assert unknown.status_code == 404


async def test_admin_routes_are_off_without_a_configured_token(database: str) -> None:
    async with running(database, admin_token=None) as (client, _):
        response = await client.get("/api/debug/stats", headers=ADMIN)
    assert response.status_code == 403
    assert "ADMIN_TOKEN" in response.json()["detail"]


# --- images -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/imageproxy/w500//evil.example/x.jpg",
        "/imageproxy/w500/..%2f..%2fetc/passwd",
        "/imageproxy/w500/https://evil.example/x.jpg",
        "/imageproxy/w9999/abc.jpg",
        "/imageproxy/w500/abc.jpg?size=original",
        "/imageproxy/w500/a/b.jpg",
        "/imageproxy/w500/abc.exe",
    ],
)
async def test_image_proxy_refuses_anything_but_a_known_size_and_one_file(
    database: str, path: str
) -> None:
    async with running(database) as (client, fake):
        response = await client.get(path)
    assert response.status_code == 400
    assert response.json() == {"detail": "not a TMDB image path"}
    assert response.headers["cache-control"] == "no-store"
    assert fake.stats().total_requests == 0


@pytest.mark.parametrize("naive", [False, True], ids=["seerrperf", "naive"])
async def test_image_proxy_serves_immutable_bytes_with_etag_and_304(
    database: str, naive: bool
) -> None:
    poster = "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
    async with running(database, naive=naive) as (client, fake):
        first = await client.get(f"/imageproxy/w342{poster}")
        revalidated = await client.get(
            f"/imageproxy/w342{poster}", headers={"If-None-Match": first.headers["etag"]}
        )
        other_tag = await client.get(f"/imageproxy/w342{poster}", headers={"If-None-Match": '"x"'})
        missing = await client.get("/imageproxy/w342/nothere.gif")
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["etag"] == etag_for(first.content)
    assert first.headers["x-content-type-options"] == "nosniff"
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["etag"] == first.headers["etag"]
    assert other_tag.status_code == 200
    assert other_tag.content == first.content
    assert missing.status_code == 400  # .gif is not a TMDB image extension
    fetched = fake.stats().requests_by_path[f"/t/p/w342{poster}"]
    assert fetched == (3 if naive else 1)


# --- health -----------------------------------------------------------------------------


async def test_readiness_follows_the_database_liveness_does_not(
    own_server: EmbeddedPostgres,
) -> None:
    async with running(own_server.dsn) as (client, _):
        ready = await client.get("/api/health/ready")
        assert ready.status_code == 200
        assert ready.headers["content-type"] == "application/health+json"
        assert ready.json()["status"] == "pass"
        await anyio.to_thread.run_sync(own_server.stop)
        try:
            down = await client.get("/api/health/ready")
            alive = await client.get("/api/health")
        finally:
            await anyio.to_thread.run_sync(own_server.start)
        # Each probe waits up to 2 s for the pool to reconnect; no sleeping here.
        with anyio.fail_after(30):
            while (back := await client.get("/api/health/ready")).status_code != 200:
                assert back.status_code == 503
    assert down.status_code == 503
    assert down.headers["cache-control"] == "no-store"
    assert down.json()["status"] == "fail"
    assert alive.status_code == 200
    assert alive.json() == {"status": "pass"}
    assert back.status_code == 200


# --- public details and settings -----------------------------------------------------


async def test_public_details_are_shared_and_revalidate(database: str) -> None:
    async with running(database) as (client, fake):
        fake.deleted_ids = {42}
        movie = await client.get("/api/v1/movie/603")
        show = await client.get("/api/v1/tv/1399")
        gone = await client.get("/api/v1/movie/42")
        bad = await client.get("/api/v1/movie/0")
    assert movie.json()["title"] == "The Matrix"
    assert show.json()["title"] == "Game of Thrones"
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert gone.status_code == 404
    assert gone.headers["cache-control"] == "no-store"
    assert bad.status_code == 422


def test_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app@db/app",
            "TMDB_ACCESS_TOKEN": SENTINEL,
            "ADMIN_TOKEN": SENTINEL,
            "MEDIA_APP_LOCK": "advisory",
            "MEDIA_APP_NAIVE": "1",
            "MEDIA_APP_MOVIE_LIMIT": "3",
        }
    )
    assert settings.lock_mode == "advisory"
    assert settings.naive
    assert settings.movie_limit == 3
    assert not settings.uses_fake_tmdb
    assert SENTINEL not in repr(settings)
    assert "app@db" not in repr(settings)
    defaults = Settings.from_env({})
    assert defaults.database_url is None
    assert defaults.uses_fake_tmdb
    assert (defaults.lock_mode, defaults.naive) == ("local", False)
    for bad in (
        {"MEDIA_APP_LOCK": "redis"},
        {"MEDIA_APP_NAIVE": "maybe"},
        {"MEDIA_APP_SERIES_LIMIT": "-1"},
        {"TMDB_API_KEY": "a", "TMDB_ACCESS_TOKEN": "b"},
    ):
        with pytest.raises(ConfigurationError):
            Settings.from_env(bad)


# --- issue 13 item 12: bounded, uncacheable, unechoed -------------------------------------


async def raw_request(url: str, data: bytes) -> tuple[int, dict[str, str]]:
    """Send ``data`` as it is over a new socket; return the answer's status and headers.

    Fails if no complete answer head arrives within 10 s: a server that
    waits for a body we never send would hang here.
    """
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    received = b""
    async with await anyio.connect_tcp(parts.hostname, parts.port) as stream:
        await stream.send(data)
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in received:
                try:
                    received += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, _ = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def test_readiness_is_bounded_when_the_database_freezes(
    own_server: EmbeddedPostgres,
) -> None:
    async with running(own_server.dsn) as (client, _):
        assert (await client.get("/api/health/ready")).status_code == 200
        await anyio.to_thread.run_sync(own_server.pause)  # SIGSTOP: connections hang
        try:
            start = time.monotonic()
            frozen = await client.get("/api/health/ready", timeout=30)
            took = time.monotonic() - start
            alive = await client.get("/api/health")
        finally:
            await anyio.to_thread.run_sync(own_server.resume)
        with anyio.fail_after(30):
            while (back := await client.get("/api/health/ready")).status_code != 200:
                assert back.status_code == 503
    assert frozen.status_code == 503
    assert took < HEALTH_TIMEOUT + 0.5, took
    assert frozen.headers["cache-control"] == "no-store"
    assert frozen.json()["status"] == "fail"
    assert alive.status_code == 200


async def test_a_database_outage_is_a_503_problem_and_nothing_is_written(
    own_server: EmbeddedPostgres,
) -> None:
    async with running(own_server.dsn) as (client, _):
        await client.post("/api/v1/request", json=body(media_id=605), headers=user(71))
        await anyio.to_thread.run_sync(own_server.stop)
        try:
            created = await client.post("/api/v1/request", json=body("tv", 1399), headers=user(72))
            page = await client.get("/api/profile/requests", headers=user(71))
            alive = await client.get("/api/health")
        finally:
            await anyio.to_thread.run_sync(own_server.start)
    for response in (created, page):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["retry-after"] == "5"
        problem = response.json()
        assert problem["status"] == 503
        assert problem["type"].endswith("#database-unavailable")
        assert "127.0.0.1" not in response.text
    assert alive.status_code == 200
    with psycopg.connect(own_server.dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM media_request WHERE requested_by = 72").fetchone()
    assert rows == (0,)


async def test_a_huge_unauthenticated_body_is_refused_before_it_is_read(database: str) -> None:
    async with running(database) as (client, _):
        url = str(client.base_url)
        huge = (
            b"POST /api/v1/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n{"
        )  # 100 MB announced, 1 byte sent
        status, headers = await raw_request(url, huge)
        assert (status, headers["connection"]) == (413, "close")
        assert headers["content-type"] == "application/problem+json"
        assert headers["cache-control"] == "no-store"
        # A body without a length is counted as it arrives and cut off at 16 KiB.
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        chunked = (
            b"POST /api/v1/request HTTP/1.1\r\nHost: x\r\nX-User-Id: 5\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ) + chunk * 2
        status, headers = await raw_request(url, chunked)
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        still_fine = await client.post("/api/v1/request", json=body(), headers=user(5))
    assert still_fine.status_code == 201


async def test_authentication_comes_before_reading_the_body(database: str) -> None:
    async with running(database) as (client, _):
        # 1,000 bytes announced and none sent: only a 401 that did not wait for them arrives.
        request = (
            b"POST /api/v1/request HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        status, headers = await raw_request(str(client.base_url), request)
    assert status == 401
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "sent",
    [
        {"mediaType": SENTINEL, "mediaId": 603},
        {"mediaType": "movie", "mediaId": SENTINEL},
        {"mediaType": "movie", "mediaId": 603, SENTINEL: 1},
        {"mediaType": "movie", "mediaId": 603, f"<script>{SENTINEL}": 1},
        '{"mediaType": "' + SENTINEL,
    ],
)
async def test_invalid_input_is_never_echoed(database: str, sent: Any) -> None:
    async with running(database) as (client, fake):
        content = sent if isinstance(sent, str) else json.dumps(sent)
        response = await client.post(
            "/api/v1/request",
            content=content,
            headers={**user(8), "Content-Type": "application/json"},
        )
    assert response.status_code == 422
    assert response.headers["cache-control"] == "no-store"
    assert SENTINEL not in response.text
    assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])
    assert fake.stats().total_requests == 0


async def test_redirects_never_come_from_the_host_header(database: str) -> None:
    async with running(database) as (client, _):
        slash = await client.get("/api/health/", headers={"Host": "evil.example"})
    assert slash.status_code == 307
    assert slash.headers["location"] == "/api/health"


@pytest.mark.slow
async def test_four_uvicorn_workers_make_one_row_per_title(database: str, tmp_path: Path) -> None:
    """Issue 17: the app under ``uvicorn --workers 4`` with advisory locks."""
    fake = FakeTmdb(api_key="tmdb-key", latency=0.05)
    async with fake.serve() as tmdb:
        env = {
            "DATABASE_URL": database,
            "TMDB_API_KEY": "tmdb-key",
            "TMDB_BASE_URL": tmdb,
            "TMDB_IMAGE_BASE_URL": tmdb.removesuffix("/3") + "/t/p",
            "MEDIA_APP_LOCK": "advisory",
        }
        async with uvicorn_workers(
            "media_app:create_app", "--factory", "--app-dir", str(EXAMPLES),
            env=env, workers=4, socket_dir=tmp_path,
        ) as client:  # fmt: skip
            statuses: list[int] = []

            async def post(n: int) -> None:
                response = await client.post(
                    "/api/v1/request", json=body("tv", 1399), headers=user(n)
                )
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tg:
                for n in range(1, 21):
                    tg.start_soon(post, n)
                for _ in range(40):
                    tg.start_soon(client.get, "/api/v1/movie/604")
    assert sorted(statuses) == [201] + [409] * 19
    assert active_rows(database, 1399) == 1
    assert 1 <= fake.stats().requests_by_path["/3/movie/604"] <= 4
