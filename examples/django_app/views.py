"""The views: sync (gunicorn sync/gthread, or threads under ASGI) and one async view."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
from seerrperf import django as sp
from seerrperf.django import PerProcess, json_response
from seerrperf.prometheus import PrometheusExporter

from .models import ACTIVE, MediaRequest

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

# Made in each worker process on first use (after gunicorn forks), closed at exit.
images_http = PerProcess(lambda: httpx.Client(timeout=10.0))
exporter = PerProcess(
    lambda: PrometheusExporter(
        pool=connections["default"].pool,  # Django's own psycopg pool (None without one)
        caches=sp.caches(),
        tmdb=sp.tmdb(),
        locks=sp.lock(),
    )
)
images: NamedCache = sp.caches().get_cache("images", ttl=86_400, maxsize=2_000)


def start_exporting(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Middleware: this worker's figures reach the multiprocess files from its first request."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        exporter()
        return get_response(request)

    return middleware


class Refused(Exception):
    """A 4xx answer, raised from a helper."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(status: int, detail: str) -> HttpResponse:
    """A small JSON error; ``json_response`` makes every non-2xx ``no-store``."""
    return json_response({"detail": detail}, cache_control=NO_STORE, status=status)


def current_user(request: HttpRequest) -> int:
    """DEMO-ONLY authentication: the caller says who they are in ``X-User-Id``."""
    raw = request.headers.get("X-User-Id", "")
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise Refused(401, "send X-User-Id: <positive integer> (demo-only auth)")
    return int(raw)


def new_request_body(request: HttpRequest) -> tuple[str, int]:
    """``{"mediaType": "movie"|"tv", "mediaId": 1..2**31-1}``; 422 never echoes the input."""
    try:
        body = json.loads(request.body)
    except ValueError:
        body = None
    if not isinstance(body, dict) or set(body) != {"mediaType", "mediaId"}:
        raise Refused(422, 'send {"mediaType": "movie" or "tv", "mediaId": <id>}')
    media_type, media_id = body["mediaType"], body["mediaId"]
    if media_type not in ("movie", "tv"):
        raise Refused(422, "mediaType must be movie or tv")
    if isinstance(media_id, bool) or not isinstance(media_id, int) or not 0 < media_id <= MAX_ID:
        raise Refused(422, "mediaId must be a positive integer")
    return media_type, media_id


def details(media_type: str, tmdb_id: int) -> dict[str, Any]:
    """The part of a TMDB movie or show the pages show (cached, coalesced, rate-limited)."""
    tmdb = sp.tmdb()
    raw = tmdb.get_movie(tmdb_id) if media_type == "movie" else tmdb.get_tv(tmdb_id)
    return {
        "title": raw.get("title") or raw.get("name"),
        "posterPath": raw.get("poster_path"),
        "releaseDate": raw.get("release_date") or raw.get("first_air_date"),
    }


# --- requests --------------------------------------------------------------------------


@require_POST
def new_request(request: HttpRequest) -> HttpResponse:
    """201; 409 if the title is requested already (in any worker); 401, 422, 503."""
    try:
        user = current_user(request)  # before the body is read
        media_type, tmdb_id = new_request_body(request)
    except Refused as refused:
        return problem(refused.status, refused.detail)
    try:  # outside the lock: keep the critical section to the check and the write
        title = str(details(media_type, tmdb_id)["title"])
    except TmdbNotFound:
        return problem(422, f"TMDB has no {media_type} {tmdb_id}")
    try:
        # advisory: pg_advisory_xact_lock in transaction.atomic() on Django's connection,
        # so the row commits before the key is released
        with sp.hold((media_type, tmdb_id), timeout=LOCK_TIMEOUT):
            active = MediaRequest.objects.filter(
                media_type=media_type, tmdb_id=tmdb_id, status__in=ACTIVE
            )
            if active.exists():
                return problem(409, "this title is requested already")
            created = MediaRequest.objects.create(
                media_type=media_type, tmdb_id=tmdb_id, title=title, requested_by=user
            )
    except IntegrityError:  # a writer that bypassed the lock got there first
        return problem(409, "this title is requested already")
    return json_response(created.as_json(), cache_control=NO_STORE, status=201)


@require_GET
def profile_requests(request: HttpRequest) -> HttpResponse:
    """The user's newest requests; private, revalidated with the ETag."""
    try:
        user = current_user(request)
    except Refused as refused:
        return problem(refused.status, refused.detail)
    take = request.GET.get("take", "20")
    if not take.isdigit() or not 1 <= int(take) <= 100:
        return problem(422, "take must be 1 to 100")
    rows = MediaRequest.objects.filter(requested_by=user).order_by("-created_at", "-id")
    results = [row.as_json() for row in rows[: int(take)]]
    return json_response(
        {"results": results},
        request=request,
        cache_control=PER_USER,
        headers={"Vary": "X-User-Id"},
    )


# --- public TMDB data ----------------------------------------------------------------


@require_GET
def media(request: HttpRequest, media_type: str, tmdb_id: str) -> HttpResponse:
    """A movie's or show's details; public, served stale while refreshing."""
    number = int(tmdb_id)
    if not 0 < number <= MAX_ID:
        return problem(404, "no such title")
    try:
        found = details(media_type, number)
    except TmdbNotFound:
        return problem(404, f"TMDB has no {media_type} {number}")
    body = {"mediaType": media_type, "mediaId": number, **found}
    return json_response(body, request=request, cache_control=PUBLIC_MEDIA)


async def async_movie(request: HttpRequest, tmdb_id: str) -> HttpResponse:
    """The same from an async view: the sync client in a thread (``sync_to_async``)."""
    number = int(tmdb_id)
    if request.method != "GET" or not 0 < number <= MAX_ID:
        return problem(404, "no such title")
    try:
        found = await sync_to_async(details)("movie", number)
    except TmdbNotFound:
        return problem(404, f"TMDB has no movie {number}")
    body = {"mediaType": "movie", "mediaId": number, **found}
    return json_response(body, request=request, cache_control=PUBLIC_MEDIA)


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


@require_GET
def image(request: HttpRequest, size: str, file: str) -> HttpResponse:
    """A TMDB image through our origin: immutable, with an ETag, fetched once per worker."""
    file_path = "/" + file
    try:
        image_url(file_path, size)  # seerrperf's rules: a known size, one /name.ext
    except ConfigurationError:
        return problem(400, "not a TMDB image path")
    if request.META.get("QUERY_STRING"):
        return problem(400, "not a TMDB image path")
    base = settings.IMAGE_BASE_URL
    try:
        kind, data, etag = images.get_or_set(
            (size, file_path), lambda: fetch_image(base, size, file_path)
        )
    except TmdbNotFound:
        return problem(404, "no such image")
    headers = {**immutable_headers(), **IMAGE_SAFETY, "ETag": etag}
    if is_not_modified(dict(request.headers.items()), etag=etag):
        response = HttpResponse(status=304, headers=headers)
        del response["Content-Type"]
        return response
    return HttpResponse(data, headers=headers, content_type=kind)


# --- operations ------------------------------------------------------------------------


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: the fleet's figures when PROMETHEUS_MULTIPROC_DIR is set."""
    body = generate_latest(exporter().registry)
    return HttpResponse(
        body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


@require_GET
def debug_stats(request: HttpRequest) -> HttpResponse:
    """collect_stats of this worker (X-Admin-Token)."""
    expected = settings.ADMIN_TOKEN
    given = request.headers.get("X-Admin-Token", "")
    if not expected or not hmac.compare_digest(given.encode(), str(expected).encode()):
        return problem(403, "send the admin token in X-Admin-Token")
    body = {"pid": os.getpid(), **sp.stats()}
    return json_response(body, cache_control=NO_STORE)
