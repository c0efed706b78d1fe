"""Each endpoint's path and parameters, from checked arguments (pure, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from seerrperf import ConfigurationError, TtlPolicy
from seerrperf._tmdb import endpoints
from seerrperf._tmdb.endpoints import ApiRequest


@pytest.mark.parametrize(
    ("request_", "path", "params"),
    [
        (endpoints.movie(603), "/movie/603", {}),
        (
            endpoints.movie(603, ["videos", "credits"]),
            "/movie/603",
            {"append_to_response": "credits,videos"},
        ),
        (endpoints.tv(1399, "images"), "/tv/1399", {"append_to_response": "images"}),
        (endpoints.tv_season(1399, 0), "/tv/1399/season/0", {}),
        (endpoints.person(287), "/person/287", {}),
        (endpoints.collection(2344), "/collection/2344", {}),
        (
            endpoints.search("movie", " matrix ", 2, region="US"),
            "/search/movie",
            {"query": "matrix", "page": "2", "include_adult": "false", "region": "US"},
        ),
        (
            endpoints.search("multi", "matrix", 1),
            "/search/multi",
            {"query": "matrix", "page": "1", "include_adult": "false"},
        ),
        (
            endpoints.discover("movie", {"page": 3}, region="US"),
            "/discover/movie",
            {"page": "3", "region": "US"},
        ),
        (
            endpoints.discover("tv", {"with_genres": "18"}, region="US"),
            "/discover/tv",
            {"with_genres": "18"},
        ),
        (endpoints.trending("person", "week"), "/trending/person/week", {}),
        (endpoints.configuration(), "/configuration", {}),
        (endpoints.languages(), "/configuration/languages", {}),
        (endpoints.countries(), "/configuration/countries", {}),
        (endpoints.genres("tv"), "/genre/tv/list", {}),
        (endpoints.watch_providers("movie"), "/watch/providers/movie", {}),
        (endpoints.watch_providers("tv", "GB"), "/watch/providers/tv", {"watch_region": "GB"}),
        (endpoints.watch_provider_regions(), "/watch/providers/regions", {}),
        (endpoints.keyword(180547), "/keyword/180547", {}),
        (endpoints.certifications("movie"), "/certification/movie/list", {}),
        (
            endpoints.find("a/b c", "imdb_id"),
            "/find/a%2Fb%20c",
            {"external_source": "imdb_id"},
        ),
    ],
)
def test_requests(request_: ApiRequest, path: str, params: dict[str, Any]) -> None:
    assert request_.path == path
    assert dict(request_.params) == params
    # The tier an endpoint names is the one its path falls in: the TTL is the same
    # through get_movie(603) and get("/movie/603").
    assert request_.endpoint == TtlPolicy.endpoint_for(path)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: endpoints.movie(0), "movie_id"),
        (lambda: endpoints.tv("1399"), "tv_id"),
        (lambda: endpoints.tv_season(1, -1), "season"),
        (lambda: endpoints.search("tv", "", 1), "query"),
        (lambda: endpoints.search("tv", "x", 0), "page"),
        (lambda: endpoints.discover("movie", {"page": 501}), "page"),
        (lambda: endpoints.discover("movie", {"api_key": "x"}), "credentials"),
        (lambda: endpoints.discover("movie", {"with_genres": [28]}), "with_genres"),  # type: ignore[dict-item]
        (lambda: endpoints.movie(True), "movie_id"),
        (lambda: endpoints.movie(603, ["credits;drop"]), "append_to_response"),
        (lambda: endpoints.trending("music", "day"), "media_type"),
        (lambda: endpoints.trending("all", "month"), "window"),
        (lambda: endpoints.genres("music"), "media_type"),
        (lambda: endpoints.watch_providers("movie", "usa"), "region"),
        (lambda: endpoints.find("..", "imdb_id"), "external_id"),
        (lambda: endpoints.find("tt1", "netflix_id"), "source"),
        (lambda: endpoints.ids([1, 0], "movie_id"), "movie_id"),
    ],
)
def test_bad_arguments_name_themselves(build: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        build()


def test_ids_are_checked_all_at_once() -> None:
    assert endpoints.ids(iter([3, 2, 3]), "tv_id") == [3, 2, 3]
