"""``create_app(settings)``: the media-request service, either build, on ``seerrperf.fastapi``."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from psycopg.errors import UniqueViolation
from pydantic import BaseModel, ConfigDict, Field

import seerrperf
from seerrperf import (
    CacheControl,
    ConfigurationError,
    PoolSettings,
    TmdbNotFound,
    image_url,
    immutable_headers,
    is_not_modified,
    no_store_headers,
)
from seerrperf.fastapi import Caches, Seerrperf, json_body, json_response

from .schema import DuplicateRequest, QuotaExceeded, create_request, user_requests, user_stats
from .services import (
    HEALTH_TIMEOUT,
    Services,
    naive_services,
    seerrperf_services,
)
from .settings import Settings

logger = logging.getLogger("media_app")

# Header presets (docs/headers.md): per-user data only in the user's browser,
# revalidated with the ETag; public TMDB data shared by CDNs and refreshed in
# the background; admin lists private, briefly reusable; writes never stored.
PER_USER = CacheControl(private=True, no_cache=True)
PUBLIC_MEDIA = CacheControl(public=True, max_age=60, stale_while_revalidate=600)
ADMIN_LIST = CacheControl(private=True, max_age=10, stale_while_revalidate=50)
NO_STORE = CacheControl(no_store=True)
# Images are served from our origin: no sniffing, no scripts in an SVG.
_IMAGE_SAFETY = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}
MAX_BODY_SIZE = 16 * 1024  # the largest body this app takes is ~50 bytes


class NewRequest(BaseModel):
    """The body of ``POST /api/v1/request`` (Seerr's field names)."""

    model_config = ConfigDict(extra="forbid")

    mediaType: Literal["movie", "tv"]
    mediaId: int = Field(gt=0, le=2**31 - 1, strict=True)


# --- dependencies ---------------------------------------------------------------------


def services(request: Request) -> Services:
    """The build's strategies, made at start-up."""
    built: Services = request.app.state.services
    return built


def user_id(x_user_id: Annotated[str | None, Header()] = None) -> int:
    """DEMO-ONLY authentication: the caller says who they are in ``X-User-Id``.

    Anybody can claim any id. A real app takes the user from a verified
    session or token instead; nothing else in the app would change.
    """
    if x_user_id is None or not x_user_id.isdigit() or not 0 < int(x_user_id) < 2**63:
        raise HTTPException(401, "send X-User-Id: <positive integer> (demo-only auth)")
    return int(x_user_id)


def require_admin(
    svc: Annotated[Services, Depends(services)],
    x_admin_token: Annotated[str | None, Header()] = None,
) -> None:
    """Admin routes need ``X-Admin-Token`` equal to ``ADMIN_TOKEN``."""
    expected = svc.settings.admin_token
    if expected is None:
        raise HTTPException(403, "admin routes are disabled: set ADMIN_TOKEN")
    if x_admin_token is None:
        raise HTTPException(401, "send X-Admin-Token")
    if not hmac.compare_digest(x_admin_token.encode(), expected.encode()):
        raise HTTPException(403, "wrong admin token")


Svc = Annotated[Services, Depends(services)]
TmdbId = Annotated[int, Path(gt=0, le=2**31 - 1)]
User = Annotated[int, Depends(user_id)]
Admin = Depends(require_admin)
# Read only after User has run: an unauthenticated body is never read.
NewRequestBody = Annotated[NewRequest, json_body(NewRequest)]


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """The part of a TMDB movie or show the pages show."""
    return {
        "title": raw.get("title") or raw.get("name"),
        "posterPath": raw.get("poster_path"),
        "releaseDate": raw.get("release_date") or raw.get("first_air_date"),
        "overview": raw.get("overview"),
    }


# --- start-up -------------------------------------------------------------------------


@asynccontextmanager
async def dev_fallbacks(settings: Settings) -> AsyncIterator[Settings]:
    """Fill in what is not configured: an embedded PostgreSQL and a FakeTmdb."""
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            from seerrperf.testing import EmbeddedPostgres

            logger.warning("DATABASE_URL is not set: starting an embedded PostgreSQL (throwaway)")
            server = EmbeddedPostgres()
            await anyio.to_thread.run_sync(server.start)
            stack.push_async_callback(anyio.to_thread.run_sync, server.close)
            settings = replace(settings, database_url=server.dsn)
        if settings.uses_fake_tmdb:
            from seerrperf.testing import FakeTmdb

            logger.warning("no TMDB credential is set: serving a FakeTmdb on 127.0.0.1")
            key = secrets.token_urlsafe(16)
            base = await stack.enter_async_context(FakeTmdb(api_key=key, latency=0.03).serve())
            settings = replace(
                settings,
                tmdb_api_key=key,
                tmdb_base_url=base,
                tmdb_image_base_url=base.removesuffix("/3") + "/t/p",
            )
        yield settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings=None`` reads them from the environment.

    Args:
        settings: Which database, TMDB, admin token, lock mode and build.

    Returns:
        A FastAPI app whose lifespan opens (and closes) the database, the
        HTTP clients and, when not configured, an embedded PostgreSQL and a
        FakeTmdb.
    """
    given = Settings.from_env() if settings is None else settings
    # Pool, TMDB client, caches, locks, health and the error contract. The
    # DSN and TMDB are known only once dev_fallbacks ran, at start-up.
    sp = Seerrperf(
        pool=PoolSettings(application_name="media_app"),
        pool_kwargs={"autocommit": True},
        health_timeout=HEALTH_TIMEOUT,
        max_body_size=MAX_BODY_SIZE,
        # REDIS_URL: one shared cache tier, TMDB budget and invalidations for every worker.
        redis_url=given.redis_url,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with dev_fallbacks(given) as ready, AsyncExitStack() as stack:
            if ready.naive:
                app.state.services = await stack.enter_async_context(naive_services(ready))
            else:
                await stack.enter_async_context(
                    sp.lifespan(
                        app,
                        database_url=ready.database_url,
                        tmdb_api_key=ready.tmdb_api_key,
                        tmdb_access_token=ready.tmdb_access_token,
                        tmdb_base_url=ready.tmdb_base_url,
                    )
                )
                app.state.services = await stack.enter_async_context(seerrperf_services(ready, sp))
            yield

    app = FastAPI(
        title="media_app (seerrperf example)",
        version=seerrperf.__version__,
        lifespan=lifespan,
    )
    sp.install(app)  # both builds: 503 for outages, no-store errors, body limit, safe redirects
    app.include_router(
        sp.health_router(
            live_path="/api/health",
            ready_path="/api/health/ready",
            version=seerrperf.__version__,
            # The naive build asks a new connection instead of the pool.
            check=(lambda: app.state.services.db.check_health()) if given.naive else None,
        )
    )

    # --- requests -------------------------------------------------------------------

    @app.post("/api/v1/request", status_code=201)
    async def new_request(user: User, body: NewRequestBody, request: Request, svc: Svc) -> Response:
        """Request a movie or show: 201, 409 if it is requested already, 403 over quota."""
        try:  # outside the lock: keep the critical section to the check and the write
            media = await svc.details.one(body.mediaType, body.mediaId)
        except TmdbNotFound:
            raise HTTPException(422, f"TMDB has no {body.mediaType} {body.mediaId}") from None
        try:
            async with svc.guard(body.mediaType, body.mediaId) as conn:
                created = await create_request(
                    conn,
                    user=user,
                    media_type=body.mediaType,
                    tmdb_id=body.mediaId,
                    title=str(summarise(media)["title"]),
                    movie_limit=svc.settings.movie_limit,
                    series_limit=svc.settings.series_limit,
                )
        except (DuplicateRequest, UniqueViolation):
            raise HTTPException(409, "this title is requested already") from None
        except QuotaExceeded as exc:
            raise HTTPException(403, str(exc)) from None
        svc.recent.invalidate()
        return json_response(request, created, cache_control=NO_STORE, status_code=201)

    @app.get("/api/profile/requests")
    async def profile_requests(
        request: Request,
        user: User,
        svc: Svc,
        take: Annotated[int, Query(ge=1, le=100)] = 20,
        skip: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        """The user's requests with TMDB details; a failed lookup gives ``media: null``."""
        async with svc.db.connection() as conn:
            total, rows = await user_requests(conn, user, take=take, skip=skip)
        details = await svc.details.many([(row["mediaType"], row["mediaId"]) for row in rows])
        results = [
            {**row, "media": summarise(media) if media is not None else None}
            for row, media in zip(rows, details, strict=True)
        ]
        body = {"pageInfo": {"results": total, "take": take, "skip": skip}, "results": results}
        return json_response(request, body, cache_control=PER_USER, headers={"Vary": "X-User-Id"})

    @app.get("/api/profile/stats")
    async def profile_stats(request: Request, user: User, svc: Svc) -> Response:
        """Totals, per type, per status and the remaining quota: one query."""
        async with svc.db.connection() as conn:
            stats = await user_stats(
                conn,
                user,
                movie_limit=svc.settings.movie_limit,
                series_limit=svc.settings.series_limit,
            )
        return json_response(request, stats, cache_control=PER_USER, headers={"Vary": "X-User-Id"})

    @app.get("/api/admin/requests/recent", dependencies=[Admin])
    async def recent(
        request: Request, svc: Svc, take: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> Response:
        """The newest requests of everybody, from a 60 s query cache."""
        rows = await svc.recent.load(take)
        return json_response(request, {"results": rows}, cache_control=ADMIN_LIST)

    # --- public TMDB data -----------------------------------------------------------

    async def media_details(
        request: Request, svc: Services, media_type: str, tmdb_id: int
    ) -> Response:
        try:
            media = await svc.details.one(media_type, tmdb_id)
        except TmdbNotFound:
            raise HTTPException(404, f"TMDB has no {media_type} {tmdb_id}") from None
        body = {"mediaType": media_type, "mediaId": tmdb_id, **summarise(media)}
        return json_response(request, body, cache_control=PUBLIC_MEDIA)

    @app.get("/api/v1/movie/{tmdb_id}")
    async def movie(request: Request, svc: Svc, tmdb_id: TmdbId) -> Response:
        """A movie's details; public, served stale while refreshing."""
        return await media_details(request, svc, "movie", tmdb_id)

    @app.get("/api/v1/tv/{tmdb_id}")
    async def tv(request: Request, svc: Svc, tmdb_id: TmdbId) -> Response:
        """A show's details; public, served stale while refreshing."""
        return await media_details(request, svc, "tv", tmdb_id)

    @app.get("/imageproxy/{size}/{file:path}")
    async def image(request: Request, svc: Svc, size: str, file: str) -> Response:
        """A TMDB image through our origin, immutable, with an ETag."""
        file_path = "/" + file
        try:
            image_url(file_path, size)  # seerrperf's rules: known size, one /name.ext
        except ConfigurationError:
            valid = False
        else:
            valid = not request.url.query  # never part of what is fetched or cached
        if not valid:
            raise HTTPException(400, "not a TMDB image path")
        try:
            found = await svc.images.get(size, file_path)
        except TmdbNotFound:
            raise HTTPException(404, "no such image") from None
        headers = {**immutable_headers(), **_IMAGE_SAFETY, "ETag": found.etag}
        if is_not_modified(request.headers, etag=found.etag):
            return Response(status_code=304, headers=headers)
        return Response(found.data, media_type=found.content_type, headers=headers)

    # --- operations -----------------------------------------------------------------

    @app.get("/api/debug/stats", dependencies=[Admin])
    async def debug_stats(request: Request, svc: Svc) -> Response:
        """Pool, caches, TMDB client and lock figures (``collect_stats``)."""
        body = {"build": svc.build, **svc.stats()}
        return json_response(request, body, cache_control=NO_STORE)

    @app.get("/api/v1/settings/cache", dependencies=[Admin])
    async def cache_list(request: Request, caches: Caches) -> Response:
        """Every cache with Seerr's stats fields (Seerr's route)."""
        listed = [
            {
                "id": name,
                "name": name,
                "stats": {
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "keys": stats.keys,
                    "ksize": stats.key_bytes,
                    "vsize": stats.value_bytes,
                },
            }
            for name, stats in caches.stats().items()
        ]
        return json_response(request, {"apiCaches": listed}, cache_control=NO_STORE)

    @app.post("/api/v1/settings/cache/{name}/flush", dependencies=[Admin], status_code=204)
    async def cache_flush(name: str, caches: Caches) -> Response:
        """Empty one cache in every worker: 204, or 404 for an unknown name (Seerr's route)."""
        if name not in caches.names():
            raise HTTPException(404, "no such cache")
        await caches.get_cache(name).aclear()  # with REDIS_URL: the shared tier too, awaited
        return Response(status_code=204, headers=no_store_headers())

    return app
