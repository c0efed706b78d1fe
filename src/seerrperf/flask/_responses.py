"""``json_response``: JSON whose bytes are exactly what ``etag_for`` hashes, with 304s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from flask import Response, request

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


def json_response(
    data: Any,
    *,
    cache_control: CacheControl,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    last_modified: dt.datetime | None = None,
    weak: bool = False,
) -> Response:
    """Answer ``data`` as canonical JSON with validators, or 304 when the client's copy is current.

    Call it in a view (it reads Flask's ``request``). The body is
    :func:`seerrperf.etag_for`'s canonical JSON (sorted keys, no spaces,
    UTF-8), so the ``ETag`` is the hash of exactly the bytes sent -- which
    ``flask.jsonify`` (its own key order and separators, a trailing
    newline) does not promise. A 2xx answer carries ``cache_control``, the
    ``ETag`` and ``Last-Modified`` when given; a GET or HEAD whose
    ``If-None-Match`` (or, without it, ``If-Modified-Since``) matches gets
    a 304 with the same validators and no body. Any other status is sent
    ``Cache-Control: no-store`` without validators, whatever
    ``cache_control`` says, so an error is never cached.

    Args:
        data: JSON-serialisable data.
        cache_control: The caching policy of a successful answer, e.g.
            ``CacheControl(public=True, max_age=60, stale_while_revalidate=600)``.
        status: The status of the full answer.
        headers: Extra headers such as ``Vary``; not ``Cache-Control``,
            ``ETag``, ``Last-Modified`` or ``Content-Type``, which this sets.
        last_modified: When the data last changed, timezone-aware.
        weak: Send a weak ETag (``W/"..."``).

    Returns:
        A Flask ``Response`` (``application/json``, or an empty 304).

    Raises:
        ConfigurationError: ``data`` is not JSON-serialisable, ``headers``
            sets a header this function owns, ``cache_control`` is not a
            ``CacheControl``, ``status`` is not an HTTP status, or
            ``last_modified`` is naive.
    """
    _validate.instance("cache_control", cache_control, CacheControl, "a CacheControl")
    _validate.count("status", status, minimum=100, maximum=599)
    extra = dict(headers or {})
    for name in extra:
        if name.lower() in _OWN_HEADERS:
            raise ConfigurationError(f"headers must not set {name}: json_response sets it")
    body = canonical_json(data)
    if not 200 <= status < 300:
        extra.update(no_store_headers())
        return Response(body, status, headers=extra, content_type=JSON_CONTENT_TYPE)
    extra["Cache-Control"] = str(cache_control)
    extra["ETag"] = etag = etag_for(body, weak=weak)
    if last_modified is not None:
        extra["Last-Modified"] = http_date(last_modified)
    if request.method in ("GET", "HEAD") and is_not_modified(
        dict(request.headers.items()), etag=etag, last_modified=last_modified
    ):
        response = Response(status=304, headers=extra)
        del response.headers["Content-Type"]
        return response
    return Response(body, status, headers=extra, content_type=JSON_CONTENT_TYPE)


def problem_response(problem: Problem) -> Response:
    """The Flask response for an RFC 9457 problem (``no-store``, ``Retry-After`` if set)."""
    return Response(problem.body(), problem.status, headers=problem.headers())
