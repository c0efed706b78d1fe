"""docs/flask.md's quick start runs as printed: in a threaded server on a socket, and under
gunicorn with four worker processes."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from werkzeug.serving import make_server

from seerrperf.testing import FakeTmdb
from tests._support import SENTINEL
from tests.web._servers import SRC, gunicorn

DOC = Path(__file__).resolve().parents[3] / "docs" / "flask.md"
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


def duplicates(client: httpx.Client, tmdb_id: int, n: int = 20) -> list[int]:
    def post(user: int) -> int:
        response = client.post(
            "/request", json={"movie_id": tmdb_id}, headers={"X-User-Id": str(user + 1)}
        )
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return sorted(pool.map(post, range(n)))


def environment(database: str, tmdb_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database,
        "FLASK_SEERRPERF_TMDB_ACCESS_TOKEN": TOKEN,
        "FLASK_SEERRPERF_TMDB_BASE_URL": tmdb_url,
    }


def test_the_quick_start_runs_as_printed(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTmdb(access_token=TOKEN)
    with fake.serve_in_thread() as tmdb_url:
        for name, value in environment(database, tmdb_url).items():
            monkeypatch.setenv(name, value)
        namespace: dict[str, Any] = {"__name__": "quick"}
        exec(compile(quick_start(), str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
        app, sp = namespace["app"], namespace["sp"]
        assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
                ready = client.get("/health/ready")
                movie = client.get("/movie/603")
                revalidated = client.get(
                    "/movie/603", headers={"If-None-Match": movie.headers["etag"]}
                )
                missing = client.get("/movie/9999999")
                statuses = duplicates(client, 603)
                anonymous = client.post("/request", json={"movie_id": 604})
                too_large = client.post(
                    "/request", content=b" " * 20_000, headers={"X-User-Id": "1"}
                )
                invalid = client.post(
                    "/request", json={"movie_id": SENTINEL}, headers={"X-User-Id": "1"}
                )
                fake.outage = True
                down = client.post("/request", json={"movie_id": 605}, headers={"X-User-Id": "1"})
        finally:
            server.shutdown()
            thread.join(timeout=10)
            server.server_close()
            sp.close()
    assert ready.status_code == 200
    assert movie.json() == {"title": "The Matrix"}
    assert movie.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert revalidated.status_code == 304
    assert (missing.status_code, missing.headers["cache-control"]) == (404, "no-store")
    assert statuses == [201] + [409] * 19
    assert pending_rows(database, 603) == 1
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    assert (anonymous.status_code, too_large.status_code, invalid.status_code) == (401, 413, 422)
    assert SENTINEL not in invalid.text
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert down.headers["cache-control"] == "no-store"
    assert "retry-after" in down.headers
    assert pending_rows(database, 605) == 0


@pytest.mark.slow
def test_the_quick_start_under_gunicorn_workers(database: str, tmp_path: Path) -> None:
    """Four worker processes: one row per title, at most one upstream call per worker."""
    (tmp_path / "quick.py").write_text(quick_start())
    fake = FakeTmdb(access_token=TOKEN, latency=0.05)
    with fake.serve_in_thread() as tmdb_url:
        env = environment(database, tmdb_url)
        path = os.pathsep.join([str(SRC), str(tmp_path)])
        init = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "quick", "init-db"],
            env={**os.environ, **env, "PYTHONPATH": path},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert init.returncode == 0, init.stderr
        with gunicorn(
            "quick:app",
            workers=WORKERS,
            worker_class="sync",
            env=env,
            socket_dir=tmp_path,
            pythonpath=[tmp_path],
            options=["--preload"],
        ) as server:
            statuses = duplicates(server.client, 603)
            with concurrent.futures.ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(lambda _: server.client.get("/movie/604"), range(40)))
    assert statuses == [201] + [409] * 19
    assert pending_rows(database, 603) == 1
    assert {answer.status_code for answer in answers} == {200}
    assert 1 <= fake.stats().requests_by_path["/3/movie/604"] <= WORKERS
