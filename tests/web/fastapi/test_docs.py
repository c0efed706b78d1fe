"""docs/fastapi.md's quick start runs as printed: in this process, and under uvicorn --workers 4."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from media_app import serve
from seerrperf.testing import FakeTmdb
from tests._support import uvicorn_workers

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[3] / "docs" / "fastapi.md"
TOKEN = "docs-token"
WORKERS = 4


def quick_start() -> str:
    text = DOC.read_text()
    section = text[text.index("## Quick start") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    return code.group(1)


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[str]:
    name = f"docs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(postgres_dsn, dbname=name)
        finally:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def pending_rows(dsn: str, tmdb_id: int) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM media_request WHERE tmdb_id = %s", (tmdb_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def duplicates(client: httpx.AsyncClient, tmdb_id: int, n: int = 20) -> list[int]:
    statuses: list[int] = []

    async def post(user: int) -> None:
        response = await client.post(
            "/request", json={"movie_id": tmdb_id}, headers={"X-User-Id": str(user)}
        )
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tg:
        for user in range(1, n + 1):
            tg.start_soon(post, user)
    return sorted(statuses)


async def test_the_quick_start_runs_as_printed(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    async with fake.serve() as tmdb_url:
        monkeypatch.setenv("DATABASE_URL", database)
        monkeypatch.setenv("TMDB_API_TOKEN", TOKEN)
        monkeypatch.setenv("TMDB_BASE_URL", tmdb_url)
        namespace: dict[str, Any] = {}
        exec(compile(quick_start(), str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
        async with serve(namespace["app"]) as url, httpx.AsyncClient(base_url=url) as client:
            ready = await client.get("/health/ready")
            movie = await client.get("/movie/603")
            revalidated = await client.get(
                "/movie/603", headers={"If-None-Match": movie.headers["etag"]}
            )
            missing = await client.get("/movie/9999999")
            statuses = await duplicates(client, 603)
            anonymous = await client.post("/request", json={"movie_id": 604})
            too_large = await client.post(
                "/request", content=b" " * 20_000, headers={"X-User-Id": "1"}
            )
            invalid = await client.post(
                "/request", json={"movie_id": "s3cr3t"}, headers={"X-User-Id": "1"}
            )
            fake.outage = True
            down = await client.post("/request", json={"movie_id": 605}, headers={"X-User-Id": "1"})
    assert ready.status_code == 200
    assert movie.json() == {"title": "The Matrix"}
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert revalidated.status_code == 304
    assert missing.status_code == 404
    assert statuses == [201] + [409] * 19
    assert pending_rows(database, 603) == 1
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    assert (anonymous.status_code, too_large.status_code, invalid.status_code) == (401, 413, 422)
    assert "s3cr3t" not in invalid.text
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert pending_rows(database, 605) == 0


@pytest.mark.slow
async def test_the_quick_start_under_uvicorn_workers(database: str, tmp_path: Path) -> None:
    """Four worker processes: one row per title, at most one upstream call per worker."""
    (tmp_path / "quick.py").write_text(quick_start())
    fake = FakeTmdb(access_token=TOKEN, latency=0.05)
    async with fake.serve() as tmdb_url:
        env = {"DATABASE_URL": database, "TMDB_API_TOKEN": TOKEN, "TMDB_BASE_URL": tmdb_url}
        async with uvicorn_workers(
            "quick:app", "--app-dir", str(tmp_path), env=env, workers=WORKERS, socket_dir=tmp_path
        ) as client:
            statuses = await duplicates(client, 603)
            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(client.get, "/movie/604")
    assert statuses == [201] + [409] * 19
    assert pending_rows(database, 603) == 1
    assert 1 <= fake.stats().requests_by_path["/3/movie/604"] <= WORKERS
