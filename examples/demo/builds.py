"""The demo's main section: the example app, naive build vs seerrperf build, under load.

Both builds run the same scripted load (``load.py``) in this process: the app
under uvicorn on 127.0.0.1, ``FakeTmdb`` on 127.0.0.1 with 30 ms latency, each
build on a database of its own so the server's own
``pg_stat_database.sessions`` counter says how many connections each build
opened.
"""

from __future__ import annotations

import importlib
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from seerrperf._runtime import percentile
from seerrperf.testing import FakeTmdb

from .load import Driver, LoadPlan

__all__ = ["BuildResult", "compare_builds", "load_media_app"]

_BUILDS = ("naive", "seerrperf")


def load_media_app() -> ModuleType | str:
    """Import the example app (``examples/media_app``); return it, or why it cannot be used.

    The app sits next to this package in ``examples/``, so it is importable
    whenever the demo is; it is imported here, not at the top, so that the
    demo's other sections still run without FastAPI.
    """
    try:
        return importlib.import_module("media_app")
    except ImportError as exc:
        if exc.name == "media_app":
            return (
                "examples/media_app was not found next to the demo: run it from a checkout "
                "of seerrperf (`make demo`, or `cd examples && python -m demo`)."
            )
        return (
            f'the example app needs FastAPI and uvicorn: pip install "seerrperf[examples]" ({exc})'
        )


@dataclass(frozen=True)
class BuildResult:
    """What one build did under the load.

    Attributes:
        build: ``"naive"`` or ``"seerrperf"``.
        elapsed_s: Wall time of the load.
        latencies_ms: Every answered request's latency.
        statuses: Answers by HTTP status.
        errors: Transport failures and answers other than 200, 201, 304, 403, 409.
        server_connections: Sessions the build opened on the server
            (``pg_stat_database.sessions``), ``None`` if the server cannot say.
        tmdb_calls: Requests FakeTmdb received (API and images).
        duplicates: Active requests beyond the first per title, in the table.
        cache_hit_rate: Over all the app's caches; ``None`` without caches.
    """

    build: str
    elapsed_s: float
    latencies_ms: Sequence[float]
    statuses: Counter[int]
    errors: int
    server_connections: int | None
    tmdb_calls: int
    duplicates: int
    cache_hit_rate: float | None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def _hit_rate(stats: dict[str, Any]) -> float | None:
    caches = stats.get("caches") or {}
    hits = sum(c["hits"] + c["stale_hits"] for c in caches.values())
    lookups = hits + sum(c["misses"] for c in caches.values())
    return hits / lookups if lookups else None


async def _scalar(conn: psycopg.AsyncConnection[Any], query: str, *params: object) -> Any:
    row = await (await conn.execute(query, params)).fetchone()
    return row[0] if row else None


async def _sessions_opened(monitor: psycopg.AsyncConnection[Any], database: str) -> int | None:
    """Sessions ever opened on ``database``, once its last backend has gone.

    Depending on the server version a backend may report its session late (at
    the latest when it exits), and nothing announces an exit, so this polls.
    """
    with anyio.move_on_after(5.0):
        while await _scalar(  # noqa: ASYNC110
            monitor, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", database
        ):
            await anyio.sleep(0.02)
    try:
        value = await _scalar(
            monitor, "SELECT sessions FROM pg_stat_database WHERE datname = %s", database
        )
    except psycopg.Error:  # PostgreSQL before 14 has no sessions counter
        return None
    return None if value is None else int(value)


async def _run_build(
    media_app: ModuleType,
    build: str,
    dsn: str,
    monitor: psycopg.AsyncConnection[Any],
    fake: FakeTmdb,
    tmdb_base: str,
    api_key: str,
    plan: LoadPlan,
    say: Callable[[str], None],
) -> BuildResult:
    database = f"seerrperf_demo_{build}_{uuid.uuid4().hex[:8]}"
    await monitor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        build_dsn = make_conninfo(dsn, dbname=database)
        admin_token = secrets.token_urlsafe(16)
        settings = media_app.Settings(
            database_url=build_dsn,
            tmdb_api_key=api_key,
            tmdb_base_url=tmdb_base,
            tmdb_image_base_url=tmdb_base.removesuffix("/3") + "/t/p",
            admin_token=admin_token,
            naive=build == "naive",
            movie_limit=1_000,
            series_limit=1_000,
        )
        before = await _sessions_opened(monitor, database)
        fake.reset_counters()
        async with media_app.serve(media_app.create_app(settings), log_level="critical") as url:
            driver = Driver(url, plan, admin_token)
            elapsed = await driver.run(build, say)
            async with driver.client() as client:
                stats = (await client.get("/api/debug/stats", headers=driver.admin)).json()
        tmdb_calls = fake.stats().total_requests
        after = await _sessions_opened(monitor, database)
        async with await psycopg.AsyncConnection.connect(build_dsn, autocommit=True) as conn:
            duplicates = await media_app.schema.count_duplicates(conn)
    finally:
        await monitor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
    return BuildResult(
        build=build,
        elapsed_s=elapsed,
        latencies_ms=driver.latencies,
        statuses=driver.statuses,
        errors=driver.errors,
        server_connections=None if before is None or after is None else after - before,
        tmdb_calls=tmdb_calls,
        duplicates=duplicates,
        cache_hit_rate=_hit_rate(stats),
    )


async def compare_builds(
    media_app: ModuleType,
    dsn: str,
    plan: LoadPlan,
    say: Callable[[str], None] = print,
) -> list[BuildResult]:
    """Run ``plan`` against the naive build, then the seerrperf build.

    Args:
        media_app: The imported example app (:func:`load_media_app`).
        dsn: A server on which this may create (and drop) two databases.
        plan: The load.
        say: Where progress lines go.

    Returns:
        The naive build's result, then the seerrperf build's.
    """
    api_key = secrets.token_urlsafe(16)
    fake = FakeTmdb(api_key=api_key, latency=plan.tmdb_latency)
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as monitor,
        fake.serve() as tmdb_base,
    ):
        return [
            await _run_build(media_app, build, dsn, monitor, fake, tmdb_base, api_key, plan, say)
            for build in _BUILDS
        ]
