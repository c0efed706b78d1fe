"""TTL tiers, input checks, retry timing and image URLs (pure, no network)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seerrperf import ConfigurationError
from seerrperf._tmdb.policy import (
    DAY,
    ENDPOINTS,
    HOUR,
    TtlPolicy,
    backoff_delay,
    check_path,
    image_url,
    retry_after_seconds,
    segment,
)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/movie/603", "movie"),
        ("/movie/603/", "movie"),
        ("/tv/1399", "tv"),
        ("/tv/1399/season/2", "tv_season"),
        ("/movie/603/recommendations", "movie_extra"),
        ("/movie/upcoming", "movie_extra"),
        ("/person/287", "person"),
        ("/person/287/combined_credits", "person"),
        ("/collection/2344", "collection"),
        ("/search/multi", "search"),
        ("/search/keyword", "search_keyword"),
        ("/discover/movie", "discover"),
        ("/trending/all/day", "trending"),
        ("/find/tt0133093", "find"),
        ("/configuration", "configuration"),
        ("/configuration/languages", "languages"),
        ("/configuration/countries", "countries"),
        ("/genre/tv/list", "genres"),
        ("/watch/providers/regions", "watch_provider_regions"),
        ("/watch/providers/movie", "watch_providers"),
        ("/keyword/180547", "keyword"),
        ("/certification/movie/list", "certifications"),
        ("/something/new", "default"),
    ],
)
def test_endpoint_classification(path: str, endpoint: str) -> None:
    assert TtlPolicy.endpoint_for(path) == endpoint


def test_seed_preset_uses_the_seed_values_and_seerr_elsewhere() -> None:
    seed = TtlPolicy.seed()
    assert seed.ttl_for("/movie/603") == 6 * HOUR
    assert seed.ttl_for("/tv/1399") == 2 * HOUR
    assert seed.ttl_for("/configuration") == DAY
    assert seed.ttl_for("/configuration/languages") == DAY
    assert seed.ttl_for("/watch/providers/tv") == 12 * HOUR
    assert seed.ttl_for("/tv/1399/season/1") == 300
    assert seed.ttl_for("/search/movie") == 300
    assert seed.ttl_for("/trending/movie/week") == 300
    assert seed.ttl_for("/genre/movie/list") == DAY
    assert seed.ttl_for("/watch/providers/regions") == DAY
    assert seed.ttl_for("/keyword/1") == 7 * DAY
    assert seed.ttl_for("/certification/tv/list") == 7 * DAY
    assert seed.ttl_for("/unknown/path") == 300


def test_seerr_preset_is_seerrs_table() -> None:
    seerr = TtlPolicy.seerr()
    assert seerr.ttl_for("/movie/603") == 43200
    assert seerr.ttl_for("/tv/1399") == 43200
    assert seerr.ttl_for("/tv/1399/season/1") == 300
    assert seerr.ttl_for("/configuration/countries") == 86400
    assert seerr.ttl_for("/search/company") == 86400
    assert seerr.ttl_for("/keyword/5") == 604800


def test_overrides_are_checked() -> None:
    policy = TtlPolicy.seed().with_overrides({"movie": 60})
    assert policy.ttl_for("/movie/1") == 60
    assert TtlPolicy.seed().ttl_for("/movie/1") == 6 * HOUR  # the original is unchanged
    with pytest.raises(ConfigurationError, match="unknown TMDB endpoint"):
        TtlPolicy.seed().with_overrides({"movies": 60})
    with pytest.raises(ConfigurationError, match="must be >= 0"):
        TtlPolicy.seed().with_overrides({"movie": -1})
    with pytest.raises(ConfigurationError, match="integer number of seconds"):
        TtlPolicy.seed().with_overrides({"movie": 1.5})  # type: ignore[dict-item]


def test_policy_is_immutable() -> None:
    policy = TtlPolicy.seed()
    with pytest.raises(TypeError):
        policy.ttls["movie"] = 1  # type: ignore[index]
    assert set(policy.ttls) == ENDPOINTS


@pytest.mark.parametrize(
    "path", ["movie/1", "/movie/../x", "//evil", "/movie/1?x=1", "/a b", "/movie/1#f", 5]
)
def test_bad_generic_paths_are_rejected(path: object) -> None:
    with pytest.raises(ConfigurationError, match="path"):
        check_path(path)


def test_segments_are_encoded() -> None:
    assert segment("tt0133093", "id") == "tt0133093"
    assert segment("a/b c", "id") == "a%2Fb%20c"
    with pytest.raises(ConfigurationError):
        segment("..", "id")


def test_retry_after_forms() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    when = dt.datetime(2026, 11, 29, 12, 0, 10, tzinfo=dt.UTC)
    now = dt.datetime(2026, 11, 29, 12, 0, 0, tzinfo=dt.UTC).timestamp()
    header = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(header, now=now) == pytest.approx(10.0)
    assert retry_after_seconds(header, now=now + 60) == 0.0


@given(st.integers(0, 20), st.floats(0, 0.999999))
def test_backoff_is_bounded_and_grows(attempt: int, jitter: float) -> None:
    delay = backoff_delay(attempt, base=0.5, cap=8.0, jitter=jitter)
    step = min(8.0, 0.5 * 2**attempt)
    assert step / 2 <= delay <= step


def test_image_url() -> None:
    assert image_url("/abc.jpg") == "https://image.tmdb.org/t/p/w500/abc.jpg"
    assert image_url("/abc.png", "original") == "https://image.tmdb.org/t/p/original/abc.png"


@pytest.mark.parametrize(
    ("size", "path"),
    [
        ("w501", "/abc.jpg"),
        ("w500", "//evil.example/x.jpg"),
        ("w500", "/../../etc/passwd"),
        ("w500", "/a.jpg?x=1"),
        ("w500", "http://evil/x.jpg"),
        ("w500", "/dir/x.jpg"),
        ("w500", "abc.jpg"),
        ("w500", "/x.exe"),
    ],
)
def test_bad_images_are_rejected(size: str, path: str) -> None:
    with pytest.raises(ConfigurationError):
        image_url(path, size)
