"""``json_response``: JSON whose bytes are exactly what ``etag_for`` hashes, with 304s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from django.http import HttpRequest, HttpResponse

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._headers import (
    CacheControl,
    canonical_json,
    etag_for,
    http_date,
    is_not_modified,
    no_store_headers,
)
from seerrperf._web import Problem

__all__ = ["JSON_CONTENT_TYPE", "json_response", "problem_response"]

JSON_CONTENT_TYPE: Final = "application/json"
_OWN_HEADERS: Final = frozenset({"cache-control", "etag", "last-modified", "content-type"})


def _request_headers(request: HttpRequest) -> dict[str, str]:
    return dict(request.headers.items())


def json_response(
    data: Any,
    *,
    cache_control: CacheControl,
    request: HttpRequest | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    last_modified: dt.datetime | None = None,
    weak: bool = False,
) -> HttpResponse:
    """Answer ``data`` as canonical JSON with validators, or 304 when the client's copy is current.

    The body is :func:`seerrperf.etag_for`'s canonical JSON (sorted keys, no
    spaces, UTF-8), so the ``ETag`` is the hash of exactly the bytes sent --
    which ``JsonResponse`` (``", "`` and ``": "`` separators, ASCII escapes)
    does not give. A 2xx answer carries ``cache_control``, the ``ETag`` and
    ``Last-Modified`` when given; with ``request``, a GET or HEAD whose
    ``If-None-Match`` (or, without it, ``If-Modified-Since``) matches gets a
    304 with the same validators and no body. Any other status is sent
    ``no-store`` without validators, whatever ``cache_control`` says.

    Args:
        data: JSON-serialisable data.
        cache_control: The caching policy of a successful answer.
        request: The request, for conditional GETs; without it there is no 304.
        status: The status of the full answer.
        headers: Extra headers such as ``Vary``; not ``Cache-Control``,
            ``ETag``, ``Last-Modified`` or ``Content-Type``.
        last_modified: When the data last changed, timezone-aware.
        weak: Send a weak ETag (``W/"..."``).

    Raises:
        ConfigurationError: ``data`` is not JSON-serialisable, ``headers``
            sets a header this function owns, ``cache_control`` is not a
            ``CacheControl``, ``status`` is not an HTTP status, or
            ``last_modified`` is naive.
    """
    _validate.instance("cache_control", cache_control, CacheControl, "a CacheControl")
    _validate.count("status", status, minimum=100, maximum=599)
    if request is not None:
        _validate.instance("request", request, HttpRequest, "a django.http.HttpRequest")
    extra = dict(headers or {})
    for name in extra:
        if name.lower() in _OWN_HEADERS:
            raise ConfigurationError(f"headers must not set {name}: json_response sets it")
    body = canonical_json(data)
    if not 200 <= status < 300:
        extra.update(no_store_headers())
        return HttpResponse(body, status=status, headers=extra, content_type=JSON_CONTENT_TYPE)
    extra["Cache-Control"] = str(cache_control)
    extra["ETag"] = etag = etag_for(body, weak=weak)
    if last_modified is not None:
        extra["Last-Modified"] = http_date(last_modified)
    if (
        request is not None
        and request.method in ("GET", "HEAD")
        and is_not_modified(_request_headers(request), etag=etag, last_modified=last_modified)
    ):
        response = HttpResponse(status=304, headers=extra)
        del response["Content-Type"]
        return response
    return HttpResponse(body, status=status, headers=extra, content_type=JSON_CONTENT_TYPE)


def problem_response(problem: Problem) -> HttpResponse:
    """The Django response for an RFC 9457 problem (``no-store``, ``Retry-After`` if set)."""
    return HttpResponse(problem.body(), status=problem.status, headers=problem.headers())
