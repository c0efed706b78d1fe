"""The two builds of the app, as interchangeable strategies.

Routes never ask which build they run in: they call a :class:`Services`.
:func:`seerrperf_services` and :func:`naive_services` differ only in what they
put there -- a pool or a connection per request, a lock or none, a caching,
coalescing TMDB client or sequential plain httpx calls, caches or none.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from seerrperf import (
    AsyncLock,
    AsyncTmdbClient,
    CacheManager,
    HealthResult,
    NamedCache,
    PgAdvisoryLock,
    TmdbError,
    TmdbNotFound,
    async_check_database_health,
    async_pool_factory,
    batch_fetch,
    cached,
    collect_stats,
    etag_for,
)

from .schema import ensure_schema, recent_requests
from .settings import Settings

HEALTH_TIMEOUT = 2.0
LOCK_TIMEOUT = 5.0


class MediaNotFound(Exception):
    """TMDB has no such title (or image)."""


class UpstreamError(Exception):
    """TMDB could not answer."""


# --- the database ---------------------------------------------------------------------


class Database(Protocol):
    """Where connections come from."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection in autocommit mode for the block."""
        ...

    async def check_health(self) -> HealthResult:
        """Ask the database whether it answers, within :data:`HEALTH_TIMEOUT`."""
        ...


class PooledDatabase:
    """seerrperf: connections from ``async_pool_factory``'s pool."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self.pool = pool

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return self.pool.connection()

    async def check_health(self) -> HealthResult:
        result = await async_check_database_health(self.pool, timeout=HEALTH_TIMEOUT)
        if not result.healthy:
            # Drop every broken idle connection now, so the first probe after
            # the database returns does not get one.
            await self.pool.check()
        return result


class ConnectPerRequest:
    """Naive: a new server connection every time one is needed."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        async with conn:
            yield conn

    async def check_health(self) -> HealthResult:
        start = time.monotonic()
        error: str | None = None
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                async with self.connection() as conn:
                    await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            error = type(exc).__name__  # libpq's message may quote the DSN
        return HealthResult(
            healthy=error is None,
            status="pass" if error is None else "fail",
            latency_ms=(time.monotonic() - start) * 1000,
            error=error,
        )


Guard = Callable[[str, int], AbstractAsyncContextManager[AsyncConnection[Any]]]
"""Gives the connection on which a request for ``(media_type, tmdb_id)`` is
checked and inserted, holding whatever protects that check-then-insert."""


def local_lock_guard(lock: AsyncLock, db: Database) -> Guard:
    """One process: an in-process lock per title, then a transaction."""

    @asynccontextmanager
    async def guard(media_type: str, tmdb_id: int) -> AsyncIterator[AsyncConnection[Any]]:
        async with lock((media_type, tmdb_id), timeout=LOCK_TIMEOUT), db.connection() as conn:
            async with conn.transaction():
                yield conn

    return guard


def advisory_lock_guard(lock: PgAdvisoryLock) -> Guard:
    """Any number of processes: an advisory lock, held by the transaction it yields."""

    def guard(media_type: str, tmdb_id: int) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return lock((media_type, tmdb_id), timeout=LOCK_TIMEOUT)

    return guard


# --- TMDB details ---------------------------------------------------------------------


class Details(Protocol):
    """TMDB details of titles."""

    async def one(self, media_type: str, tmdb_id: int) -> dict[str, Any]:
        """One title.

        Raises:
            MediaNotFound: TMDB has no such title.
            UpstreamError: TMDB could not answer.
        """
        ...

    async def many(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
        """Many titles, aligned with ``items``; ``None`` where a fetch failed."""
        ...


class TmdbDetails:
    """seerrperf: ``AsyncTmdbClient`` (cached, coalesced, rate-limited), many at once."""

    def __init__(self, client: AsyncTmdbClient) -> None:
        self._client = client

    async def one(self, media_type: str, tmdb_id: int) -> dict[str, Any]:
        fetch = self._client.get_movie if media_type == "movie" else self._client.get_tv
        try:
            return await fetch(tmdb_id)
        except TmdbNotFound as exc:
            raise MediaNotFound(media_type, tmdb_id) from exc
        except TmdbError as exc:
            raise UpstreamError(media_type, tmdb_id) from exc

    async def many(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
        async def fetch(item: tuple[str, int]) -> dict[str, Any]:
            return await self.one(*item)

        return await batch_fetch(fetch, items, concurrency=10)


class SequentialDetails:
    """Naive: one plain httpx call per title, one after the other, nothing cached."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._base = settings.tmdb_base_url.rstrip("/")
        self._params = {"api_key": settings.tmdb_api_key} if settings.tmdb_api_key else {}
        self._headers = (
            {"Authorization": f"Bearer {settings.tmdb_access_token}"}
            if settings.tmdb_access_token
            else {}
        )

    async def one(self, media_type: str, tmdb_id: int) -> dict[str, Any]:
        url = f"{self._base}/{media_type}/{tmdb_id}"
        try:
            response = await self._http.get(url, params=self._params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise UpstreamError(media_type, tmdb_id) from exc
        if response.status_code == 404:
            raise MediaNotFound(media_type, tmdb_id)
        if response.status_code != 200:
            raise UpstreamError(media_type, tmdb_id)
        data: dict[str, Any] = response.json()
        return data

    async def many(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
        results: list[dict[str, Any] | None] = []
        for media_type, tmdb_id in items:
            try:
                results.append(await self.one(media_type, tmdb_id))
            except (MediaNotFound, UpstreamError):
                results.append(None)
        return results


# --- images ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """Image bytes as fetched from the TMDB image CDN, with their ETag."""

    content_type: str
    data: bytes
    etag: str


async def fetch_image(http: httpx.AsyncClient, base_url: str, size: str, file_path: str) -> Image:
    """GET ``{base_url}/{size}{file_path}`` (both already validated).

    Raises:
        MediaNotFound: The CDN has no such image.
        UpstreamError: The CDN failed, or answered with something not an image.
    """
    try:
        response = await http.get(f"{base_url.rstrip('/')}/{size}{file_path}")
    except httpx.HTTPError as exc:
        raise UpstreamError(size, file_path) from exc
    if response.status_code == 404:
        raise MediaNotFound(size, file_path)
    content_type = response.headers.get("content-type", "")
    if response.status_code != 200 or not content_type.startswith("image/"):
        raise UpstreamError(size, file_path)
    return Image(content_type, response.content, etag_for(response.content))


class Images(Protocol):
    """Where the image proxy gets bytes from."""

    async def get(self, size: str, file_path: str) -> Image:
        """The image; raises as :func:`fetch_image`."""
        ...


class CachedImages:
    """seerrperf: a bounded ``NamedCache``; concurrent misses share one fetch."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, cache: NamedCache) -> None:
        self._http = http
        self._base = base_url
        self._cache = cache

    async def get(self, size: str, file_path: str) -> Image:
        image: Image = await self._cache.aget_or_set(
            (size, file_path), lambda: fetch_image(self._http, self._base, size, file_path)
        )
        return image


class DirectImages:
    """Naive: every image request goes to the CDN."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self._http = http
        self._base = base_url

    async def get(self, size: str, file_path: str) -> Image:
        return await fetch_image(self._http, self._base, size, file_path)


# --- putting a build together ---------------------------------------------------------


@dataclass(frozen=True)
class RecentList:
    """The admin's list of recent requests, and how to forget a cached copy."""

    load: Callable[[int], Awaitable[list[dict[str, Any]]]]
    invalidate: Callable[[], None]


@dataclass(frozen=True)
class Services:
    """Everything the routes use; one build or the other."""

    build: Literal["seerrperf", "naive"]
    settings: Settings
    db: Database
    guard: Guard
    details: Details
    images: Images
    recent: RecentList
    caches: CacheManager
    stats: Callable[[], dict[str, Any]]


def _dsn(settings: Settings) -> str:
    if not settings.database_url:
        raise ValueError("settings.database_url is needed here")
    return settings.database_url


@asynccontextmanager
async def seerrperf_services(settings: Settings) -> AsyncIterator[Services]:
    """The seerrperf build: pool, lock plus unique index, AsyncTmdbClient, caches."""
    caches = CacheManager()
    async with AsyncExitStack() as stack:
        pool = async_pool_factory(
            _dsn(settings), kwargs={"autocommit": True}, application_name="media_app"
        )
        await stack.enter_async_context(pool)
        db = PooledDatabase(pool)
        async with db.connection() as conn:
            await ensure_schema(conn, unique_index=True)
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=32))
        )
        tmdb = await stack.enter_async_context(
            AsyncTmdbClient(
                api_key=settings.tmdb_api_key,
                access_token=settings.tmdb_access_token,
                base_url=settings.tmdb_base_url,
                cache=caches.get_cache("tmdb", ttl=21_600, maxsize=10_000),
                http_client=http,
            )
        )
        lock: AsyncLock | PgAdvisoryLock
        if settings.lock_mode == "advisory":
            lock = PgAdvisoryLock(pool, namespace="media_app")
            guard = advisory_lock_guard(lock)
        else:
            lock = AsyncLock()
            guard = local_lock_guard(lock, db)

        @cached(caches.get_cache("queries", ttl=60, maxsize=1_000))
        async def recent(take: int) -> list[dict[str, Any]]:
            async with db.connection() as conn:
                return await recent_requests(conn, take)

        images = caches.get_cache("images", ttl=86_400, maxsize=2_000)
        yield Services(
            build="seerrperf",
            settings=settings,
            db=db,
            guard=guard,
            details=TmdbDetails(tmdb),
            images=CachedImages(http, settings.tmdb_image_base_url, images),
            recent=RecentList(recent, recent.cache_clear),
            caches=caches,
            stats=lambda: collect_stats(
                pool=pool, caches=caches, tmdb=tmdb, locks={"requests": lock}
            ),
        )


@asynccontextmanager
async def naive_services(settings: Settings) -> AsyncIterator[Services]:
    """The naive build: what an app without these patterns typically does."""
    db = ConnectPerRequest(_dsn(settings))
    caches = CacheManager()  # stays empty
    async with httpx.AsyncClient() as http:
        async with db.connection() as conn:
            await ensure_schema(conn, unique_index=False)

        async def recent(take: int) -> list[dict[str, Any]]:
            async with db.connection() as conn:
                return await recent_requests(conn, take)

        def no_lock(
            media_type: str, tmdb_id: int
        ) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
            return db.connection()

        yield Services(
            build="naive",
            settings=settings,
            db=db,
            guard=no_lock,
            details=SequentialDetails(http, settings),
            images=DirectImages(http, settings.tmdb_image_base_url),
            recent=RecentList(recent, lambda: None),
            caches=caches,
            stats=lambda: collect_stats(caches=caches),
        )
