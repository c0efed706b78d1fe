"""The TMDB endpoints as requests: path, parameters and TTL tier from checked arguments; no I/O.

Each function checks its arguments (raising
:class:`~seerrperf.ConfigurationError` before any request) and returns an
:class:`ApiRequest` whose parameters are already strings and whose TTL tier
is named, so a client, async or sync, only sends it through its cache. The
client's defaults (``region``) are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, TypeAlias

from seerrperf import _validate

from .policy import (
    EXTERNAL_SOURCES,
    MEDIA_TYPES,
    TIME_WINDOWS,
    TRENDING_TYPES,
    check_append,
    check_page,
    check_params,
    check_query,
    check_region,
    segment,
    tmdb_id,
)

__all__ = [
    "ApiRequest",
    "Scalar",
    "certifications",
    "collection",
    "configuration",
    "countries",
    "discover",
    "find",
    "genres",
    "ids",
    "keyword",
    "languages",
    "movie",
    "person",
    "search",
    "trending",
    "tv",
    "tv_season",
    "watch_provider_regions",
    "watch_providers",
]

Scalar: TypeAlias = str | int | float | bool
"""A query parameter value."""

_NO_PARAMS: Final[Mapping[str, str]] = MappingProxyType({})


class ApiRequest(NamedTuple):
    """A GET below the API root, ready to send.

    Attributes:
        path: The API path, e.g. ``/movie/603``.
        params: Query parameters as strings (``None`` values dropped).
        endpoint: The :class:`~.policy.TtlPolicy` tier it belongs to.
    """

    path: str
    params: Mapping[str, str]
    endpoint: str


def _with_append(path: str, parts: Iterable[str], endpoint: str) -> ApiRequest:
    joined = check_append(parts) if parts else ""
    return ApiRequest(path, {"append_to_response": joined} if joined else _NO_PARAMS, endpoint)


def movie(movie_id: object, append_to_response: Iterable[str] = ()) -> ApiRequest:
    """``/movie/{id}``, optionally with ``append_to_response`` parts."""
    # The common case checked inline: this runs on every cache hit.
    if type(movie_id) is not int or movie_id < 1:
        movie_id = tmdb_id("movie_id", movie_id)
    return _with_append(f"/movie/{movie_id}", append_to_response, "movie")


def tv(tv_id: object, append_to_response: Iterable[str] = ()) -> ApiRequest:
    """``/tv/{id}``, optionally with ``append_to_response`` parts."""
    if type(tv_id) is not int or tv_id < 1:
        tv_id = tmdb_id("tv_id", tv_id)
    return _with_append(f"/tv/{tv_id}", append_to_response, "tv")


def tv_season(tv_id: object, season: object) -> ApiRequest:
    """``/tv/{id}/season/{n}``; season 0 holds the specials."""
    number = _validate.count("season", season)
    return ApiRequest(f"/tv/{tmdb_id('tv_id', tv_id)}/season/{number}", _NO_PARAMS, "tv_season")


def person(person_id: object) -> ApiRequest:
    """``/person/{id}``."""
    return ApiRequest(f"/person/{tmdb_id('person_id', person_id)}", _NO_PARAMS, "person")


def collection(collection_id: object) -> ApiRequest:
    """``/collection/{id}``."""
    path = f"/collection/{tmdb_id('collection_id', collection_id)}"
    return ApiRequest(path, _NO_PARAMS, "collection")


def search(kind: str, query: object, page: object, *, region: str | None = None) -> ApiRequest:
    """``/search/{kind}`` (``multi``, ``movie``, ``tv``), adult titles excluded."""
    params = {"query": check_query(query), "page": str(check_page(page)), "include_adult": "false"}
    if region is not None:
        params["region"] = region
    return ApiRequest(f"/search/{kind}", params, "search")


def discover(
    kind: str, filters: Mapping[str, Scalar | None], *, region: str | None = None
) -> ApiRequest:
    """``/discover/{kind}`` with TMDB's filters; ``region`` is a default for movies."""
    params = dict(filters)
    if "page" in params:
        params["page"] = check_page(params["page"])
    if region and kind == "movie":
        params.setdefault("region", region)
    return ApiRequest(f"/discover/{kind}", check_params(params), "discover")


def trending(media_type: object, window: object) -> ApiRequest:
    """``/trending/{media_type}/{window}``."""
    kind = _validate.choice("media_type", media_type, TRENDING_TYPES)
    span = _validate.choice("window", window, TIME_WINDOWS)
    return ApiRequest(f"/trending/{kind}/{span}", _NO_PARAMS, "trending")


def configuration() -> ApiRequest:
    """``/configuration``."""
    return ApiRequest("/configuration", _NO_PARAMS, "configuration")


def languages() -> ApiRequest:
    """``/configuration/languages``."""
    return ApiRequest("/configuration/languages", _NO_PARAMS, "languages")


def countries() -> ApiRequest:
    """``/configuration/countries``."""
    return ApiRequest("/configuration/countries", _NO_PARAMS, "countries")


def genres(media_type: object) -> ApiRequest:
    """``/genre/{media_type}/list``."""
    kind = _validate.choice("media_type", media_type, MEDIA_TYPES)
    return ApiRequest(f"/genre/{kind}/list", _NO_PARAMS, "genres")


def watch_providers(media_type: object, region: object = None) -> ApiRequest:
    """``/watch/providers/{media_type}``, optionally for one ``watch_region``."""
    kind = _validate.choice("media_type", media_type, MEDIA_TYPES)
    params = _NO_PARAMS if region is None else {"watch_region": check_region(region)}
    return ApiRequest(f"/watch/providers/{kind}", params, "watch_providers")


def watch_provider_regions() -> ApiRequest:
    """``/watch/providers/regions``."""
    return ApiRequest("/watch/providers/regions", _NO_PARAMS, "watch_provider_regions")


def keyword(keyword_id: object) -> ApiRequest:
    """``/keyword/{id}``."""
    return ApiRequest(f"/keyword/{tmdb_id('keyword_id', keyword_id)}", _NO_PARAMS, "keyword")


def certifications(media_type: object) -> ApiRequest:
    """``/certification/{media_type}/list``."""
    kind = _validate.choice("media_type", media_type, MEDIA_TYPES)
    return ApiRequest(f"/certification/{kind}/list", _NO_PARAMS, "certifications")


def find(external_id: object, source: object) -> ApiRequest:
    """``/find/{external_id}?external_source=...``."""
    chosen = _validate.choice("source", source, EXTERNAL_SOURCES)
    path = f"/find/{segment(external_id, 'external_id')}"
    return ApiRequest(path, {"external_source": chosen}, "find")


def ids(values: Iterable[object], arg: str) -> list[int]:
    """Check many TMDB ids at once (for the batch forms), before any request."""
    return [tmdb_id(arg, value) for value in values]
