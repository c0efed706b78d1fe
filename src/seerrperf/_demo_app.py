"""The demo's main section: the example app, naive build vs seerrperf build, under load.

The example app lives in ``examples/media_app`` of the source tree, not in the
installed package. :func:`load_media_app` looks for it next to this file's
source tree (an editable install or a checkout) and under the current
directory, and puts it on ``sys.path``.

Both builds run the same scripted load in this process: the app under uvicorn
on 127.0.0.1, ``FakeTmdb`` on 127.0.0.1 with 30 ms latency, each build on a
database of its own so the server's own ``pg_stat_database.sessions`` counter
says how many connections each build opened.
"""

from __future__ import annotations

import importlib
import random
import secrets
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .testing import FakeTmdb

__all__ = ["BuildResult", "LoadPlan", "compare_builds", "load_media_app", "results_table"]

_EXPECTED = frozenset({200, 201, 304, 403, 409})
_BUILDS = ("naive", "seerrperf")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load_media_app(roots: Sequence[Path] | None = None) -> ModuleType | str:
    """Import the example app; return it, or why it cannot be used.

    Args:
        roots: Where to look for ``examples/media_app``; by default the
            source tree this module belongs to (a checkout or an editable
            install), then the current directory.
    """
    if roots is None:
        roots = [Path(__file__).resolve().parents[2], Path.cwd()]
    examples = next(
        (
            root / "examples"
            for root in roots
            if (root / "examples/media_app/__init__.py").is_file()
        ),
        None,
    )
    if examples is None:
        return (
            "examples/media_app was not found: it ships with the source tree, not the "
            "package. Run `make demo` (or `python -m seerrperf demo`) in a checkout of "
            "seerrperf to include it."
        )
    if str(examples) not in sys.path:
        sys.path.insert(0, str(examples))
    try:
        return importlib.import_module("media_app")
    except ImportError as exc:
        return (
            f'the example app needs FastAPI and uvicorn: pip install "seerrperf[examples]" ({exc})'
        )


@dataclass(frozen=True)
class LoadPlan:
    """The scripted load, the same for both builds.

    Attributes:
        users: Concurrent users; each runs ``rounds`` rounds of: the profile
            page (requests list, then stats and up to ``posters`` poster
            images side by side), a title's details page, a new request for
            a title; the first ``admins`` also load the recent-requests list.
        rounds: Rounds per user.
        bursts: Bursts of ``burst_size`` users requesting the same new title
            at the same moment, spread over the run.
        burst_size: Concurrent requests per burst.
        titles: Movies in the catalogue users pick from (plus a third as many shows).
        posters: Poster images loaded per profile view.
        admins: Users who also poll the recent-requests list.
        think_s: Mean pause of a user between pages (uniform, 0.5x to 1.5x).
        tmdb_latency: Seconds FakeTmdb takes per answer.
    """

    users: int = 30
    rounds: int = 12
    bursts: int = 12
    burst_size: int = 25
    titles: int = 60
    posters: int = 4
    admins: int = 3
    think_s: float = 0.4
    tmdb_latency: float = 0.03

    @classmethod
    def quick(cls) -> LoadPlan:
        """A short run for CI: seconds, same invariants."""
        return cls(users=10, rounds=3, bursts=3, burst_size=15, titles=20, admins=2, think_s=0.05)

    def catalogue(self) -> list[tuple[str, int]]:
        """The titles users browse and request (The Matrix and its sequels first)."""
        movies = [603, 604, 605, *range(10_001, 10_001 + self.titles - 3)]
        shows = [1399, *range(20_001, 20_001 + max(0, self.titles // 3 - 1))]
        return [("movie", i) for i in movies] + [("tv", i) for i in shows]


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


class _Progress:
    """Counts finished user rounds; lets the burst task wait for a count."""

    def __init__(self) -> None:
        self.rounds = 0
        self._waiters: list[tuple[int, anyio.Event]] = []

    def advance(self) -> None:
        self.rounds += 1
        for count, event in self._waiters:
            if self.rounds >= count:
                event.set()

    async def wait_for(self, count: int) -> None:
        if self.rounds < count:
            event = anyio.Event()
            self._waiters.append((count, event))
            await event.wait()


class _Driver:
    """Plays the scripted load against one running build and records every answer.

    Every user (and every burst requester) has an HTTP client of its own, as
    browsers do; one shared client would spend its time scanning its own
    connection pool (httpcore's cost grows with its connections).
    """

    def __init__(self, base_url: str, plan: LoadPlan, admin_token: str) -> None:
        self.base_url = base_url
        self.plan = plan
        self.admin = {"X-Admin-Token": admin_token}
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.progress = _Progress()
        self._tls = ssl.create_default_context()  # unused over http://, costly to build per client

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=60.0, verify=self._tls)

    async def call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.errors += 1
            return None
        self.latencies.append((time.perf_counter() - start) * 1000)
        self.statuses[response.status_code] += 1
        if response.status_code not in _EXPECTED:
            self.errors += 1
        return response

    async def request(
        self, client: httpx.AsyncClient, user: int, media_type: str, tmdb_id: int
    ) -> None:
        body = {"mediaType": media_type, "mediaId": tmdb_id}
        headers = {"X-User-Id": str(user)}
        await self.call(client, "POST", "/api/v1/request", json=body, headers=headers)

    async def get(self, client: httpx.AsyncClient, url: str, user: int | None = None) -> None:
        await self.call(client, "GET", url, headers={"X-User-Id": str(user)} if user else None)

    async def think(self, rng: random.Random) -> None:
        await anyio.sleep(rng.uniform(0.5, 1.5) * self.plan.think_s)

    async def user(self, index: int) -> None:
        rng = random.Random(f"media_app-demo:{index}")
        catalogue = self.plan.catalogue()
        user = index + 1
        async with self.client() as client:
            for _ in range(self.plan.rounds):
                # The profile page: the list, then its stats and posters side by side.
                page = await self.call(
                    client, "GET", "/api/profile/requests", headers={"X-User-Id": str(user)}
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.get, client, "/api/profile/stats", user)
                    for poster in _posters(page)[: self.plan.posters]:
                        tg.start_soon(self.get, client, f"/imageproxy/w342{poster}")
                await self.think(rng)
                # A title's page, then a request for some title.
                media_type, tmdb_id = rng.choice(catalogue)
                await self.get(client, f"/api/v1/{media_type}/{tmdb_id}")
                await self.think(rng)
                media_type, tmdb_id = rng.choice(catalogue)
                await self.request(client, user, media_type, tmdb_id)
                if index < self.plan.admins:
                    await self.call(client, "GET", "/api/admin/requests/recent", headers=self.admin)
                await self.think(rng)
                self.progress.advance()

    async def bursts(self) -> None:
        total = self.plan.users * self.plan.rounds
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(self.client()) for _ in range(self.plan.burst_size)
            ]
            for burst in range(self.plan.bursts):
                await self.progress.wait_for(total * burst // self.plan.bursts)
                title = 900_000 + burst  # nobody else requests these
                async with anyio.create_task_group() as tg:
                    for user, client in enumerate(clients, start=1):
                        tg.start_soon(self.request, client, user, "movie", title)

    async def run(self, build: str, say: Callable[[str], None]) -> float:
        start = time.perf_counter()
        total = self.plan.users * self.plan.rounds

        async def report() -> None:
            while True:
                await anyio.sleep(2.0)
                say(
                    f"   {build}: {self.progress.rounds}/{total} user rounds, "
                    f"{len(self.latencies):,} requests, {time.perf_counter() - start:.0f} s"
                )

        async with anyio.create_task_group() as outer:
            outer.start_soon(report)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.bursts)
                for index in range(self.plan.users):
                    tg.start_soon(self.user, index)
            outer.cancel_scope.cancel()
        return time.perf_counter() - start


def _posters(page: httpx.Response | None) -> list[str]:
    if page is None or page.status_code != 200:
        return []
    return [
        item["media"]["posterPath"]
        for item in page.json()["results"]
        if item["media"] and item["media"]["posterPath"]
    ]


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
            driver = _Driver(url, plan, admin_token)
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


def _fewer(naive: float, ours: float) -> str:
    if naive <= 0:
        return "-"
    return f"{100 * (1 - ours / naive):.0f}% fewer"


def results_table(naive: BuildResult, ours: BuildResult) -> list[list[str]]:
    """Rows of "seed claim vs measured": metric, claim, naive, seerrperf, change, verdict."""
    rows: list[list[str]] = []
    for label, q in (("p50 latency ms", 50), ("p99 latency ms", 99)):
        theirs, mine = naive.percentile(q), ours.percentile(q)
        faster = 100 * (1 - mine / theirs) if theirs else 0.0
        rows.append(
            [
                label,
                "30-50% faster under load",
                f"{theirs:,.1f}",
                f"{mine:,.1f}",
                f"{faster:.0f}% faster",
                "met" if faster >= 30 else "NOT met",
            ]
        )
    rows.append(
        [
            "throughput req/s",
            "(paced load)",
            f"{naive.throughput:,.0f}",
            f"{ours.throughput:,.0f}",
            f"{ours.throughput / naive.throughput:.1f}x" if naive.throughput else "-",
            "",
        ]
    )
    theirs_conns, our_conns = naive.server_connections, ours.server_connections
    if theirs_conns is None or our_conns is None:
        rows.append(["server connections opened", "60-80% fewer", "n/a", "n/a", "", ""])
    else:
        rows.append(
            [
                "server connections opened",
                "60-80% fewer",
                f"{theirs_conns:,}",
                f"{our_conns:,}",
                _fewer(theirs_conns, our_conns),
                "met" if our_conns <= 0.4 * theirs_conns else "NOT met",
            ]
        )
    rows.append(
        [
            "TMDB upstream calls",
            "20-30% fewer",
            f"{naive.tmdb_calls:,}",
            f"{ours.tmdb_calls:,}",
            _fewer(naive.tmdb_calls, ours.tmdb_calls),
            "met" if ours.tmdb_calls <= 0.8 * naive.tmdb_calls else "NOT met",
        ]
    )
    rows.append(
        [
            "duplicate requests (rows)",
            "none (lock + unique index)",
            f"{naive.duplicates:,}",
            f"{ours.duplicates:,}",
            "",
            "met" if ours.duplicates == 0 else "NOT met",
        ]
    )
    rows.append(
        [
            "cache hit rate",
            "(not claimed)",
            "no cache" if naive.cache_hit_rate is None else f"{naive.cache_hit_rate:.0%}",
            "no cache" if ours.cache_hit_rate is None else f"{ours.cache_hit_rate:.0%}",
            "",
            "",
        ]
    )
    rows.append(
        [
            "errors (5xx, transport)",
            "(none expected)",
            f"{naive.errors:,}",
            f"{ours.errors:,}",
            "",
            "met" if ours.errors == 0 else "NOT met",
        ]
    )
    return rows
