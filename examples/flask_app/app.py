"""``create_app(config)``: the media-request service on Flask, built on ``seerrperf.flask``."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any

import httpx
from flask import Flask, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.errors import UniqueViolation

from seerrperf import (
    CacheControl,
    ConfigurationError,
    NamedCache,
    TmdbNotFound,
    TmdbUnavailable,
    etag_for,
    image_url,
    immutable_headers,
    is_not_modified,
)
from seerrperf.flask import PerProcess, Seerrperf, json_response
from seerrperf.prometheus import PrometheusExporter

from .schema import DuplicateRequest, create_request, create_schema, user_requests

# Header presets (docs/headers.md): public TMDB data shared by CDNs and
# refreshed in the background; per-user data revalidated with the ETag;
# writes and errors never stored.
PUBLIC_MEDIA = CacheControl(public=True, max_age=60, stale_while_revalidate=600)
PER_USER = CacheControl(private=True, no_cache=True)
NO_STORE = CacheControl(no_store=True)
IMAGE_SAFETY = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}
LOCK_TIMEOUT = 5.0
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_ID = 2**31 - 1

DEFAULTS: Mapping[str, Any] = {
    "SEERRPERF_POOL": {"application_name": "flask_app"},
    "SEERRPERF_POOL_NAME": "flask_app",
    "SEERRPERF_HEALTH_TIMEOUT": 2.0,
    "SEERRPERF_MAX_BODY_SIZE": 16 * 1024,  # the largest body this app takes is ~50 bytes
    "IMAGE_BASE_URL": "https://image.tmdb.org/t/p",
    "ADMIN_TOKEN": None,
}

sp = Seerrperf()
# Made in each worker process on first use (after gunicorn forks), closed at exit.
images_http = PerProcess(lambda: httpx.Client(timeout=10.0))
exporter = PerProcess(
    lambda: PrometheusExporter(pool=sp.pool, caches=sp.caches, tmdb=sp.tmdb, locks=sp.lock)
)


def problem(status: int, detail: str) -> Response:
    """A small JSON error; ``json_response`` makes every non-2xx ``no-store``."""
    return json_response({"detail": detail}, cache_control=NO_STORE, status=status)


def current_user() -> int:
    """DEMO-ONLY authentication: the caller says who they are in ``X-User-Id``."""
    raw = request.headers.get("X-User-Id", "")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
        abort(problem(401, "send X-User-Id: <positive integer> (demo-only auth)"))
    return int(raw)


def new_request_body() -> tuple[str, int]:
    """``{"mediaType": "movie"|"tv", "mediaId": 1..2**31-1}``; 422 never echoes the input."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"mediaType", "mediaId"}:
        abort(problem(422, 'send {"mediaType": "movie" or "tv", "mediaId": <id>}'))
    media_type, media_id = body["mediaType"], body["mediaId"]
    if media_type not in ("movie", "tv"):
        abort(problem(422, "mediaType must be movie or tv"))
    if isinstance(media_id, bool) or not isinstance(media_id, int) or not 0 < media_id <= MAX_ID:
        abort(problem(422, "mediaId must be a positive integer"))
    return media_type, media_id


def details(media_type: str, tmdb_id: int) -> dict[str, Any]:
    """The part of a TMDB movie or show the pages show (cached, coalesced, rate-limited)."""
    raw = sp.tmdb.get_movie(tmdb_id) if media_type == "movie" else sp.tmdb.get_tv(tmdb_id)
    return {
        "title": raw.get("title") or raw.get("name"),
        "posterPath": raw.get("poster_path"),
        "releaseDate": raw.get("release_date") or raw.get("first_air_date"),
    }


def fetch_image(base_url: str, size: str, file_path: str) -> tuple[str, bytes, str]:
    """GET one image from the CDN, at most 8 MB; ``(content type, bytes, ETag)``."""
    path = f"/{size}{file_path}"
    try:
        with images_http().stream("GET", base_url.rstrip("/") + path) as response:
            if response.status_code == 404:
                raise TmdbNotFound(f"the image CDN has no {path}", status=404, path=path)
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or not kind.startswith("image/"):
                raise TmdbUnavailable(f"image CDN {path}", status=response.status_code, path=path)
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise TmdbUnavailable(f"image CDN {path}: too large", status=200, path=path)
    except httpx.HTTPError as exc:
        raise TmdbUnavailable(f"image CDN {path}: no answer", status=None, path=path) from exc
    return kind, bytes(data), etag_for(bytes(data))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``FLASK_*`` environment variables, then ``config``.

    ``FLASK_SEERRPERF_DATABASE_URL`` (or ``DATABASE_URL``),
    ``FLASK_SEERRPERF_TMDB_ACCESS_TOKEN``, ``FLASK_SEERRPERF_TMDB_BASE_URL``,
    ``FLASK_IMAGE_BASE_URL``, ``FLASK_ADMIN_TOKEN``, ``FLASK_SEERRPERF_LOCK``
    ... (Flask's ``from_prefixed_env``: values are read as JSON when they parse).
    ``REDIS_URL`` (or ``FLASK_SEERRPERF_REDIS_URL``) gives every worker one
    shared cache tier, one TMDB rate limit and each other's invalidations.
    """
    app = Flask("flask_app")
    app.config.from_mapping(DEFAULTS)
    if os.environ.get("REDIS_URL", "").strip():  # a shared cache tier and TMDB budget
        app.config["SEERRPERF_REDIS_URL"] = os.environ["REDIS_URL"].strip()
    app.config.from_prefixed_env()
    app.config.from_mapping(config or {})
    sp.init_app(app)  # checks SEERRPERF_*; 503s for outages, no-store errors, body limit
    app.register_blueprint(
        sp.health_blueprint(live_path="/api/health", ready_path="/api/health/ready")
    )
    images: NamedCache = sp.caches.get_cache("images", ttl=86_400, maxsize=2_000)

    @app.before_request
    def start_exporting() -> None:
        exporter()  # this worker's figures reach the multiprocess files from now on

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables (run once before starting the workers)."""
        with sp.pool.connection() as conn:
            create_schema(conn)

    # --- requests ----------------------------------------------------------------------

    @app.post("/api/v1/request")
    def new_request() -> Response:
        """201; 409 if the title is requested already (in any worker); 401, 422, 503."""
        user = current_user()  # before the body is read
        media_type, tmdb_id = new_request_body()
        try:  # outside the lock: keep the critical section to the check and the write
            title = str(details(media_type, tmdb_id)["title"])
        except TmdbNotFound:
            return problem(422, f"TMDB has no {media_type} {tmdb_id}")
        try:
            with sp.lock((media_type, tmdb_id), timeout=LOCK_TIMEOUT) as held:
                conn = held or sp.connection()  # advisory: the lock's transaction
                with conn.transaction():
                    created = create_request(
                        conn, media_type=media_type, tmdb_id=tmdb_id, title=title, user=user
                    )
        except (DuplicateRequest, UniqueViolation):
            return problem(409, "this title is requested already")
        return json_response(created, cache_control=NO_STORE, status=201)

    @app.get("/api/profile/requests")
    def profile_requests() -> Response:
        """The user's newest requests; private, revalidated with the ETag."""
        user = current_user()
        take = request.args.get("take", 20, type=int)
        if not 1 <= take <= 100:
            return problem(422, "take must be 1 to 100")
        results = user_requests(sp.connection(), user, take)
        return json_response(
            {"results": results}, cache_control=PER_USER, headers={"Vary": "X-User-Id"}
        )

    # --- public TMDB data ------------------------------------------------------------

    @app.get("/api/v1/<any(movie, tv):media_type>/<int:tmdb_id>")
    def media(media_type: str, tmdb_id: int) -> Response:
        """A movie's or show's details; public, served stale while refreshing."""
        if not 0 < tmdb_id <= MAX_ID:
            return problem(404, "no such title")
        try:
            found = details(media_type, tmdb_id)
        except TmdbNotFound:
            return problem(404, f"TMDB has no {media_type} {tmdb_id}")
        body = {"mediaType": media_type, "mediaId": tmdb_id, **found}
        return json_response(body, cache_control=PUBLIC_MEDIA)

    @app.get("/imageproxy/<size>/<path:file>")
    def image(size: str, file: str) -> Response:
        """A TMDB image through our origin: immutable, with an ETag, fetched once per worker."""
        file_path = "/" + file
        try:
            image_url(file_path, size)  # seerrperf's rules: a known size, one /name.ext
        except ConfigurationError:
            return problem(400, "not a TMDB image path")
        if request.query_string:
            return problem(400, "not a TMDB image path")
        base = app.config["IMAGE_BASE_URL"]
        try:
            kind, data, etag = images.get_or_set(
                (size, file_path), lambda: fetch_image(base, size, file_path)
            )
        except TmdbNotFound:
            return problem(404, "no such image")
        headers = {**immutable_headers(), **IMAGE_SAFETY, "ETag": etag}
        if is_not_modified(dict(request.headers.items()), etag=etag):
            return Response(status=304, headers=headers)
        return Response(data, headers=headers, content_type=kind)

    # --- operations ------------------------------------------------------------------

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text: the fleet's figures when PROMETHEUS_MULTIPROC_DIR is set."""
        body = generate_latest(exporter().registry)
        return Response(
            body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
        )

    @app.get("/api/debug/stats")
    def debug_stats() -> Response:
        """collect_stats of this worker (X-Admin-Token)."""
        expected = app.config["ADMIN_TOKEN"]
        given = request.headers.get("X-Admin-Token", "")
        if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
            return problem(403, "send the admin token in X-Admin-Token")
        body = {"pid": os.getpid(), **sp.stats()}
        return json_response(body, cache_control=NO_STORE)

    return app
