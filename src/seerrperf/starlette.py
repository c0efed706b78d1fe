"""Starlette and FastAPI glue: JSON responses with ETag, Cache-Control and 304s.

Needs Starlette (``pip install "seerrperf[starlette]"``); the rest of
seerrperf never imports this module. The logic lives in the framework-neutral
helpers of :mod:`seerrperf` (``etag_for``, ``is_not_modified``,
``http_date``); this module only builds the Starlette ``Response``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

try:
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'seerrperf.starlette needs Starlette: pip install "seerrperf[starlette]"'
    ) from _missing

from ._errors import ConfigurationError
from ._headers import (
    CacheControl,
    canonical_json,
    etag_for,
    http_date,
    is_not_modified,
    no_store_headers,
)

__all__ = ["json_response"]

_OWN_HEADERS = ("cache-control", "etag", "last-modified")


def json_response(
    request: Request,
    data: Any,
    *,
    cache_control: CacheControl,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    last_modified: dt.datetime | None = None,
    weak: bool = False,
) -> Response:
    """Answer with ``data`` as JSON plus validators, or 304 when the client's copy is current.

    A 2xx answer carries ``cache_control``, an ``ETag`` over the exact body
    bytes (``etag_for(data)`` for JSON objects, arrays and numbers; a ``str``
    is sent as a JSON string, so its tag is that of its quoted form) and
    ``Last-Modified`` when given. A
    GET or HEAD whose ``If-None-Match`` / ``If-Modified-Since`` match gets a
    304 with the same headers and no body. Any other status (errors, redirects) is
    never turned into a 304 and is always sent with ``Cache-Control:
    no-store`` and no validators, whatever ``cache_control`` says, so an
    error can never be cached publicly.

    Args:
        request: The incoming request (for its method and conditional headers).
        data: JSON-serialisable data; serialised with sorted keys and no spaces.
        cache_control: The caching policy for a successful answer, e.g.
            ``CacheControl(public=True, max_age=60, stale_while_revalidate=600)``.
        status_code: The status of the full answer.
        headers: Extra headers such as ``Vary``; not ``Cache-Control``,
            ``ETag`` or ``Last-Modified``, which this function owns.
        last_modified: When the data last changed, timezone-aware.
        weak: Send a weak ETag (``W/"..."``).

    Returns:
        A Starlette ``Response`` (``application/json``, or an empty 304).

    Raises:
        ConfigurationError: ``data`` is not JSON-serialisable, ``headers``
            sets a header this function owns, or ``last_modified`` is naive.
    """
    extra = dict(headers or {})
    for name in extra:
        if name.lower() in _OWN_HEADERS:
            raise ConfigurationError(f"headers must not set {name}: json_response sets it")
    body = canonical_json(data)
    if not 200 <= status_code < 300:
        extra.update(no_store_headers())
        return Response(body, status_code, headers=extra, media_type="application/json")
    extra["Cache-Control"] = str(cache_control)
    extra["ETag"] = etag = etag_for(body, weak=weak)
    if last_modified is not None:
        extra["Last-Modified"] = http_date(last_modified)
    if request.method in ("GET", "HEAD") and is_not_modified(
        request.headers, etag=etag, last_modified=last_modified
    ):
        return Response(status_code=304, headers=extra)
    return Response(body, status_code, headers=extra, media_type="application/json")
