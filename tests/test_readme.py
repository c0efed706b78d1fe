"""The README's combined example runs as printed, on a real server and FakeTmdb."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from seerrperf import AsyncTmdbClient, async_pool_factory
from seerrperf.testing import FakeTmdb

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> dict[str, Any]:
    text = README.read_text()
    section = text[text.index("## Everything together") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


@pytest.mark.anyio
async def test_readme_example_creates_one_request_per_title(postgres_dsn: str) -> None:
    example = _example()
    schema = f"readme_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(
            f"CREATE TABLE {schema}.media_request (id serial PRIMARY KEY, tmdb_id int NOT NULL,"
            " requested_by int NOT NULL, status text NOT NULL DEFAULT 'pending')"
        )
    fake = FakeTmdb(access_token="token")
    http = httpx.AsyncClient(transport=fake.transport())
    kwargs = {"options": f"-c search_path={schema}"}
    outcomes: list[int] = []
    async with (
        async_pool_factory(postgres_dsn, kwargs=kwargs) as pool,
        AsyncTmdbClient(access_token="token", http_client=http) as tmdb,
    ):

        async def one(user: int) -> None:
            status, body, headers = await example["request_movie"](pool, tmdb, user, 603)
            outcomes.append(status)
            if status == 201:
                assert body == {"title": "The Matrix", "status": "pending"}
                assert headers["ETag"].startswith('"')
                assert headers["Cache-Control"].startswith("private")

        async with anyio.create_task_group() as tg:
            for user in range(10):
                tg.start_soon(one, user)
        async with pool.connection() as conn:
            rows = await (await conn.execute("SELECT count(*) FROM media_request")).fetchone()
    await http.aclose()
    assert sorted(outcomes) == [201] + [409] * 9
    assert rows == (1,)
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
