"""docs/django.md's quick start runs as printed: its files written out, migrated, served by
gunicorn with four worker processes (``--preload``) on a real PostgreSQL and a FakeTmdb."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from seerrperf import etag_for
from seerrperf.testing import FakeTmdb
from tests.web._servers import SRC, gunicorn

DOC = Path(__file__).resolve().parents[3] / "docs" / "django.md"
TOKEN = "docs-token"
WORKERS = 4


def quick_start_files() -> dict[str, str]:
    """The quick start's code blocks, by the file name on their first line."""
    text = DOC.read_text()
    section = text[text.index("## Quick start") : text.index("## Settings")]
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        first, _, rest = block.partition("\n")
        assert first.startswith("# quick/"), first
        files[first.removeprefix("# ")] = rest
    return files


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
            "SELECT count(*) FROM quick_mediarequest WHERE tmdb_id = %s", (tmdb_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def django_admin(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_files_are_the_whole_project() -> None:
    assert sorted(quick_start_files()) == [
        "quick/models.py",
        "quick/settings.py",
        "quick/urls.py",
        "quick/views.py",
        "quick/wsgi.py",
    ]


@pytest.mark.slow
def test_the_quick_start_under_gunicorn_workers(database: str, tmp_path: Path) -> None:
    """Four preloaded workers: one row per title, at most one upstream call per worker."""
    package = tmp_path / "quick"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, code in quick_start_files().items():
        (tmp_path / name).write_text(code)
    fake = FakeTmdb(access_token=TOKEN, latency=0.05)
    with fake.serve_in_thread() as tmdb_url:
        env = {
            "DATABASE_URL": database,
            "DJANGO_SECRET_KEY": "docs-test",
            "DJANGO_ALLOWED_HOSTS": "app",
            "DJANGO_SETTINGS_MODULE": "quick.settings",
            "TMDB_API_TOKEN": TOKEN,
            "TMDB_BASE_URL": tmdb_url,
            "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]),
        }
        migrated = django_admin(env, tmp_path, "migrate", "--run-syncdb", "--no-input")
        assert migrated.returncode == 0, migrated.stderr
        checked = django_admin(env, tmp_path, "check", "--deploy", "--fail-level", "ERROR")
        assert checked.returncode == 0, checked.stderr
        assert "seerrperf." not in checked.stderr + checked.stdout  # timeouts are set
        health = django_admin(env, tmp_path, "seerrperf_health")
        assert (health.returncode, json.loads(health.stdout)["status"]) == (0, "pass")
        with gunicorn(
            "quick.wsgi",
            workers=WORKERS,
            worker_class="sync",
            env=env,
            socket_dir=tmp_path,
            pythonpath=[tmp_path],
            options=["--preload"],
        ) as server:
            client = server.client
            ready = client.get("/health/ready")
            live = client.get("/health/live")
            movie = client.get("/movie/603")
            revalidated = client.get("/movie/603", headers={"If-None-Match": movie.headers["etag"]})
            missing = client.get("/movie/9999999")

            def post(user: int) -> int:
                answer = client.post(
                    "/request", json={"movie_id": 604}, headers={"X-User-Id": str(user + 1)}
                )
                return answer.status_code

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                statuses = sorted(pool.map(post, range(20)))
            with concurrent.futures.ThreadPoolExecutor(40) as pool:
                answers: list[httpx.Response] = list(
                    pool.map(lambda _: client.get("/movie/605"), range(40))
                )
            anonymous = client.post("/request", json={"movie_id": 606})
            too_large = client.post("/request", content=b" " * 20_000, headers={"X-User-Id": "1"})
            invalid = client.post(
                "/request", json={"movie_id": "s3cr3t"}, headers={"X-User-Id": "1"}
            )
            fake.outage = True
            down = client.post("/request", json={"movie_id": 607}, headers={"X-User-Id": "1"})
    assert (ready.status_code, live.status_code) == (200, 200)
    assert ready.headers["content-type"] == "application/health+json"
    assert movie.json() == {"title": "The Matrix"}
    assert movie.headers["etag"] == etag_for(movie.content)
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert revalidated.status_code == 304
    assert (missing.status_code, missing.headers["cache-control"]) == (404, "no-store")
    assert statuses == [201] + [409] * 19
    assert pending_rows(database, 604) == 1
    assert {answer.status_code for answer in answers} == {200}
    assert 1 <= fake.stats().requests_by_path["/3/movie/605"] <= WORKERS
    assert (anonymous.status_code, too_large.status_code, invalid.status_code) == (401, 413, 422)
    assert "s3cr3t" not in invalid.text
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.headers["cache-control"] == "no-store"
    assert "retry-after" in down.headers
    assert pending_rows(database, 607) == 0
