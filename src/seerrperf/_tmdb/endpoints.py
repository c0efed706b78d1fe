"""The TMDB endpoints as requests: path and parameters from checked arguments; no I/O.

Each function checks its arguments (raising
:class:`~seerrperf.ConfigurationError` before any request) and returns an
:class:`ApiRequest`; a client, async or sync, only sends it through its
cache. The client's defaults (``region``) are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeAlias

from seerrperf import _validate

from .policy import (
    EXTERNAL_SOURCES,
    MEDIA_TYPES,
    TIME_WINDOWS,
    TRENDING_TYPES,
    check_append,
    check_page,
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

_NO_PARAMS: Final[Mapping[str, Scalar | None]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A GET below the API root: ``path`` and query ``params`` (``None`` values are dropped)."""

    path: str
    params: Mapping[str, Scalar | None] = field(default_factory=lambda: _NO_PARAMS)


def _with_append(path: str, parts: Iterable[str]) -> ApiRequest:
    joined = check_append(parts)
    return ApiRequest(path, {"append_to_response": joined} if joined else _NO_PARAMS)


def movie(movie_id: object, append_to_response: Iterable[str] = ()) -> ApiRequest:
    """``/movie/{id}``, optionally with ``append_to_response`` parts."""
    return _with_append(f"/movie/{tmdb_id('movie_id', movie_id)}", append_to_response)


def tv(tv_id: object, append_to_response: Iterable[str] = ()) -> ApiRequest:
    """``/tv/{id}``, optionally with ``append_to_response`` parts."""
    return _with_append(f"/tv/{tmdb_id('tv_id', tv_id)}", append_to_response)


def tv_season(tv_id: object, season: object) -> ApiRequest:
    """``/tv/{id}/season/{n}``; season 0 holds the specials."""
    number = _validate.count("season", season)
    return ApiRequest(f"/tv/{tmdb_id('tv_id', tv_id)}/season/{number}")


def person(person_id: object) -> ApiRequest:
    """``/person/{id}``."""
    return ApiRequest(f"/person/{tmdb_id('person_id', person_id)}")


def collection(collection_id: object) -> ApiRequest:
    """``/collection/{id}``."""
    return ApiRequest(f"/collection/{tmdb_id('collection_id', collection_id)}")


def search(kind: str, query: object, page: object, *, region: str | None = None) -> ApiRequest:
    """``/search/{kind}`` (``multi``, ``movie``, ``tv``), adult titles excluded."""
    params: dict[str, Scalar | None] = {
        "query": check_query(query),
        "page": check_page(page),
        "include_adult": False,
    }
    if region is not None:
        params["region"] = region
    return ApiRequest(f"/search/{kind}", params)


def discover(
    kind: str, filters: Mapping[str, Scalar | None], *, region: str | None = None
) -> ApiRequest:
    """``/discover/{kind}`` with TMDB's filters; ``region`` is a default for movies."""
    params = dict(filters)
    if "page" in params:
        params["page"] = check_page(params["page"])
    if region and kind == "movie":
        params.setdefault("region", region)
    return ApiRequest(f"/discover/{kind}", params)


def trending(media_type: object, window: object) -> ApiRequest:
    """``/trending/{media_type}/{window}``."""
    kind = _validate.choice("media_type", media_type, TRENDING_TYPES)
    span = _validate.choice("window", window, TIME_WINDOWS)
    return ApiRequest(f"/trending/{kind}/{span}")


def configuration() -> ApiRequest:
    """``/configuration``."""
    return ApiRequest("/configuration")


def languages() -> ApiRequest:
    """``/configuration/languages``."""
    return ApiRequest("/configuration/languages")


def countries() -> ApiRequest:
    """``/configuration/countries``."""
    return ApiRequest("/configuration/countries")


def genres(media_type: object) -> ApiRequest:
    """``/genre/{media_type}/list``."""
    return ApiRequest(f"/genre/{_validate.choice('media_type', media_type, MEDIA_TYPES)}/list")


def watch_providers(media_type: object, region: object = None) -> ApiRequest:
    """``/watch/providers/{media_type}``, optionally for one ``watch_region``."""
    kind = _validate.choice("media_type", media_type, MEDIA_TYPES)
    watch_region = None if region is None else check_region(region)
    return ApiRequest(f"/watch/providers/{kind}", {"watch_region": watch_region})


def watch_provider_regions() -> ApiRequest:
    """``/watch/providers/regions``."""
    return ApiRequest("/watch/providers/regions")


def keyword(keyword_id: object) -> ApiRequest:
    """``/keyword/{id}``."""
    return ApiRequest(f"/keyword/{tmdb_id('keyword_id', keyword_id)}")


def certifications(media_type: object) -> ApiRequest:
    """``/certification/{media_type}/list``."""
    kind = _validate.choice("media_type", media_type, MEDIA_TYPES)
    return ApiRequest(f"/certification/{kind}/list")


def find(external_id: object, source: object) -> ApiRequest:
    """``/find/{external_id}?external_source=...``."""
    chosen = _validate.choice("source", source, EXTERNAL_SOURCES)
    return ApiRequest(f"/find/{segment(external_id, 'external_id')}", {"external_source": chosen})


def ids(values: Iterable[object], arg: str) -> list[int]:
    """Check many TMDB ids at once (for the batch forms), before any request."""
    return [tmdb_id(arg, value) for value in values]
