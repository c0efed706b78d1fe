"""The two builds of the app, as interchangeable strategies.

Routes never ask which build they run in: they call a :class:`Services`.
:func:`seerrperf_services` takes its parts from a running
:class:`~seerrperf.fastapi.Seerrperf`; :func:`naive_services` makes what an
app without these patterns typically has -- a connection per request, no
lock, sequential plain httpx calls, no caches. Both raise seerrperf's TMDB
errors, so an outage gets the same 503 in either build.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx
import psycopg
from psycopg import AsyncConnection

from seerrperf import (
    AsyncLock,
    AsyncPgAdvisoryLock,
    AsyncTmdbClient,
    HealthResult,
    NamedCache,
    TmdbNotFound,
    TmdbUnavailable,
    batch_fetch,
    cached,
    collect_stats,
    etag_for,
)
from seerrperf.fastapi import Seerrperf

from .schema import ensure_schema, recent_requests
from .settings import Settings

HEALTH_TIMEOUT = 2.0
LOCK_TIMEOUT = 5.0
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # TMDB's largest posters are a few MB


class Database(Protocol):
    """Where connections come from: a pool, or a new connection each time."""

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A connection in autocommit mode for the block."""
        ...


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
        """``SELECT 1`` on a new connection, within :data:`HEALTH_TIMEOUT`."""
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


def advisory_lock_guard(lock: AsyncPgAdvisoryLock) -> Guard:
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
            TmdbNotFound: TMDB has no such title.
            TmdbError: TMDB could not answer (``TmdbUnavailable``: an outage).
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
        return await fetch(tmdb_id)

    async def many(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
        async def fetch(item: tuple[str, int]) -> dict[str, Any]:
            return await self.one(*item)

        return await batch_fetch(fetch, items, concurrency=10)


def _unavailable(path: str, status: int | None = None) -> TmdbUnavailable:
    return TmdbUnavailable(f"TMDB {path}: no usable answer", status=status, path=path)


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
        path = f"/{media_type}/{tmdb_id}"
        try:
            response = await self._http.get(
                self._base + path, params=self._params, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise _unavailable(path) from exc
        if response.status_code == 404:
            raise TmdbNotFound(f"TMDB has no {path}", status=404, path=path)
        if response.status_code != 200:
            raise _unavailable(path, response.status_code)
        data: dict[str, Any] = response.json()
        return data

    async def many(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any] | None]:
        results: list[dict[str, Any] | None] = []
        for media_type, tmdb_id in items:
            try:
                results.append(await self.one(media_type, tmdb_id))
            except (TmdbNotFound, TmdbUnavailable):
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
    """GET ``{base_url}/{size}{file_path}`` (both already validated), at most 8 MB.

    Raises:
        TmdbNotFound: The CDN has no such image.
        TmdbUnavailable: The CDN failed, or answered with something not an
            image or too large.
    """
    path = f"/{size}{file_path}"
    try:
        async with http.stream("GET", base_url.rstrip("/") + path) as response:
            if response.status_code == 404:
                raise TmdbNotFound(f"the image CDN has no {path}", status=404, path=path)
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200 or not content_type.startswith("image/"):
                raise _unavailable(path, response.status_code)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise _unavailable(path, response.status_code)
    except httpx.HTTPError as exc:
        raise _unavailable(path) from exc
    return Image(content_type, bytes(data), etag_for(bytes(data)))


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
    stats: Callable[[], dict[str, Any]]


def _image_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=32))


@asynccontextmanager
async def seerrperf_services(settings: Settings, sp: Seerrperf) -> AsyncIterator[Services]:
    """The seerrperf build, from a running ``Seerrperf``: its pool, lock, TMDB client, caches."""
    async with sp.pool.connection() as conn:
        await ensure_schema(conn, unique_index=True)
    lock: AsyncLock | AsyncPgAdvisoryLock
    if settings.lock_mode == "advisory":
        lock = sp.advisory_lock
        guard = advisory_lock_guard(lock)
    else:
        lock = sp.lock
        guard = local_lock_guard(lock, sp.pool)

    @cached(sp.caches.get_cache("queries", ttl=60, maxsize=1_000))
    async def recent(take: int) -> list[dict[str, Any]]:
        async with sp.pool.connection() as conn:
            return await recent_requests(conn, take)

    images = sp.caches.get_cache("images", ttl=86_400, maxsize=2_000)
    async with _image_client() as http:
        yield Services(
            build="seerrperf",
            settings=settings,
            db=sp.pool,
            guard=guard,
            details=TmdbDetails(sp.tmdb),
            images=CachedImages(http, settings.tmdb_image_base_url, images),
            recent=RecentList(recent, recent.cache_clear),
            stats=lambda: collect_stats(
                pool=sp.pool, caches=sp.caches, tmdb=sp.tmdb, locks={"requests": lock}
            ),
        )


@asynccontextmanager
async def naive_services(settings: Settings) -> AsyncIterator[Services]:
    """The naive build: what an app without these patterns typically does."""
    if not settings.database_url:
        raise ValueError("settings.database_url is needed here")
    db = ConnectPerRequest(settings.database_url)
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
            stats=lambda: collect_stats(caches={}),
        )
