"""TTL tiers, input checks, retry timing and image URLs (pure, no network)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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
    check_append,
    check_base_url,
    check_language,
    check_page,
    check_params,
    check_path,
    check_query,
    check_region,
    image_base_from,
    image_url,
    peer_text,
    retry_after_seconds,
    segment,
    tmdb_id,
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
        ("/keyword/180547/movies", "default"),  # Seerr gives it no TTL of its own
        ("/certification/movie/list", "certifications"),
        ("/something/new", "default"),
    ],
)
def test_endpoint_classification(path: str, endpoint: str) -> None:
    assert TtlPolicy.endpoint_for(path) == endpoint


def test_by_volatility_uses_the_seed_values_and_seerr_elsewhere() -> None:
    seed = TtlPolicy.by_volatility()
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
    assert seed.ttl_for("/keyword/1/movies") == 300
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
    assert seerr.ttl_for("/keyword/5/movies") == 300  # getMoviesByKeyword passes no TTL


def test_seed_is_a_deprecated_alias_of_by_volatility() -> None:
    with pytest.warns(DeprecationWarning, match=r"TtlPolicy\.by_volatility\(\)"):
        policy = TtlPolicy.seed()
    assert policy == TtlPolicy.by_volatility()


def test_overrides_are_checked() -> None:
    policy = TtlPolicy.by_volatility().with_overrides({"movie": 60})
    assert policy.ttl_for("/movie/1") == 60
    assert TtlPolicy.by_volatility().ttl_for("/movie/1") == 6 * HOUR  # the original is unchanged
    with pytest.raises(ConfigurationError, match="unknown TMDB endpoint"):
        TtlPolicy.by_volatility().with_overrides({"movies": 60})
    with pytest.raises(ConfigurationError, match=r"TTL for 'movie' must be finite and >= 0"):
        TtlPolicy.by_volatility().with_overrides({"movie": -1})
    for bad in (float("inf"), float("nan"), True, "60", 11 * 365 * DAY):
        with pytest.raises(ConfigurationError, match="TTL for 'movie'"):
            TtlPolicy.by_volatility().with_overrides({"movie": bad})  # type: ignore[dict-item]


def test_ttls_are_durations_so_fractions_are_accepted_as_in_named_cache() -> None:
    policy = TtlPolicy.by_volatility().with_overrides({"movie": 1.5, "tv": 0})
    assert policy.ttl_for("/movie/1") == 1.5
    assert policy.swr_for("/movie/1") == 0.75
    assert policy.ttl_for("/tv/1") == 0  # do not cache
    relaxed = TtlPolicy(policy.ttls, stale_if_error=0.5, not_found_ttl=2.5)
    assert (relaxed.stale_if_error, relaxed.not_found_ttl) == (0.5, 2.5)


def test_lacking_tiers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="lacks endpoint"):
        TtlPolicy({"movie": 60})


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"stale_while_revalidate": -0.1}, "stale_while_revalidate must be a number between 0"),
        ({"stale_while_revalidate": 11}, "stale_while_revalidate"),
        ({"stale_while_revalidate": True}, "stale_while_revalidate"),
        ({"stale_while_revalidate": float("nan")}, "stale_while_revalidate"),
        ({"stale_if_error": -1}, "stale_if_error"),
        ({"stale_if_error": float("inf")}, "stale_if_error"),
        ({"not_found_ttl": "60"}, "not_found_ttl"),
    ],
)
def test_bad_stale_settings(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        TtlPolicy(TtlPolicy.seerr().ttls, **kwargs)


def test_policy_is_immutable() -> None:
    policy = TtlPolicy.by_volatility()
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


@pytest.mark.parametrize(
    "value",
    [
        "\xb2",  # superscript two: str.isdigit() says yes, float() says no (issue 13 item 8)
        "\u0663",  # Arabic-Indic three, likewise
        "1.5",
        "-3",
        "",
        "   ",
        "Mon, 99 Foo 9999 99:99:99 GMT",
        "Fri, 31 Dec 9999 23:59:59 +9999",
        "Thu, 01 Jan 1970 00:00:00",  # no zone: not an HTTP-date
        "\x00\r\n",
        "9" * 5000 + "x",
    ],
)
def test_an_invalid_retry_after_reads_as_absent(value: str) -> None:
    assert retry_after_seconds(value) is None


@given(st.text(max_size=60))
def test_retry_after_never_raises(value: str) -> None:
    seconds = retry_after_seconds(value)
    assert seconds is None or seconds >= 0


def test_an_absurd_retry_after_is_a_number_the_caller_caps() -> None:
    assert retry_after_seconds("9" * 5000) == float("inf")  # capped at max_retry_after


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("not found", "not found"),
        ("bad\r\nFORGED log line", "bad\\r\\nFORGED log line"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("abc\u202egnp.exe", "abc\\u202egnp.exe"),  # a bidi override cannot hide text
        ("nul\x00", "nul\\x00"),
        ("caf\u00e9 \u6771\u4eac", "caf\u00e9 \u6771\u4eac"),  # printable text stays as it is
    ],
)
def test_peer_text_escapes_what_could_forge_or_hide(text: str, shown: str) -> None:
    assert peer_text(text) == shown


@given(st.text(max_size=400))
def test_peer_text_is_one_printable_line_of_bounded_length(text: str) -> None:
    safe = peer_text(text, limit=50)
    assert safe.isprintable()
    assert len(safe) <= 50 * len("\\U0001f600") + 3
    assert safe.endswith("...") or len(text) <= 50


@given(st.integers(0, 20), st.floats(0, 0.999999))
def test_backoff_is_bounded_and_grows(attempt: int, jitter: float) -> None:
    delay = backoff_delay(attempt, base=0.5, cap=8.0, jitter=jitter)
    step = min(8.0, 0.5 * 2**attempt)
    assert step / 2 <= delay <= step


def test_image_url() -> None:
    assert image_url("/abc.jpg") == "https://image.tmdb.org/t/p/w500/abc.jpg"
    assert image_url("/abc.png", "original") == "https://image.tmdb.org/t/p/original/abc.png"


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("https://image.tmdb.org/t/p/", "https://image.tmdb.org/t/p/w92/abc.jpg"),
        ("https://cdn.example/tmdb", "https://cdn.example/tmdb/w92/abc.jpg"),  # slash added
        ("http://127.0.0.1:8080/t/p/", "http://127.0.0.1:8080/t/p/w92/abc.jpg"),
        ("/imageproxy/tmdb/t/p/", "/imageproxy/tmdb/t/p/w92/abc.jpg"),  # the app's own proxy
    ],
)
def test_image_url_on_another_root(base_url: str, url: str) -> None:
    assert image_url("/abc.jpg", "w92", base_url=base_url) == url


@pytest.mark.parametrize(
    "base_url",
    [
        "//evil.example/t/p/",
        "ftp://x/t/p/",
        "https://x/t/p/?size=",
        "https://x/t/p/#",
        "https://user:pw@x/t/p/",
        "https://x:99999/t/p/",
        "https://x/t/p/\r\nSet-Cookie: a=b",
        "https://x/t p/",
        "",
        5,
    ],
)
def test_a_bad_image_root_is_refused(base_url: Any) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        image_url("/abc.jpg", "w92", base_url=base_url)


@pytest.mark.parametrize(
    ("configuration", "root"),
    [
        (
            {"images": {"secure_base_url": "https://image.tmdb.org/t/p/"}},
            "https://image.tmdb.org/t/p/",
        ),
        ({"images": {"secure_base_url": "https://cdn.example/p"}}, "https://cdn.example/p/"),
        ({"images": {"base_url": "http://image.tmdb.org/t/p/"}}, None),  # plain http is not read
        ({"images": {"secure_base_url": "/t/p/"}}, None),  # a peer may not point at our origin
        ({"images": {"secure_base_url": "https://x/\nX: y"}}, None),
        ({"images": {"secure_base_url": "https://x/" + "a" * 3000}}, None),
        ({"images": "https://x/"}, None),
        ({}, None),
    ],
)
def test_the_image_root_from_configuration_is_checked(
    configuration: dict[str, Any], root: str | None
) -> None:
    assert image_base_from(configuration) == root


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


def test_parameters_become_strings_and_none_is_dropped() -> None:
    params = {"page": 2, "adult": False, "vote": 7.5, "q": "x", "region": None}
    assert check_params(params) == {"page": "2", "adult": "false", "vote": "7.5", "q": "x"}
    assert check_params(None) == {}


@pytest.mark.parametrize(
    "params",
    [{"api_key": "x"}, {"Access_Token": "x"}, {"": 1}, {"x": [1]}, {"x": object()}, {1: "x"}],
)
def test_bad_parameters_are_refused(params: dict[Any, Any]) -> None:
    with pytest.raises(ConfigurationError, match="parameter"):
        check_params(params)


def test_append_parts_are_deduplicated_and_sorted() -> None:
    assert check_append(["videos", "credits", " credits "]) == "credits,videos"
    assert check_append("images,season/1") == "images,season/1"
    assert check_append(()) == ""
    with pytest.raises(ConfigurationError, match="append_to_response"):
        check_append(["credits;drop"])


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (check_language, "pt-BR", "portuguese"),
        (check_region, "US", "us"),
        (check_base_url, "https://x/3/", "https://x/3?api_key=k"),
        (check_base_url, "https://x:8443/3", "https://x:99999/3"),
        (check_base_url, "http://127.0.0.1:1/3", "https://x/3\r\nHost: evil"),
        (check_base_url, "https://x/3", "https://x/3 "),
        (check_base_url, "https://x/3", "https://x\t/3"),
        (check_query, " matrix ", " "),
        (check_page, 500, 501),
    ],
)
def test_input_checks(check: Any, good: object, bad: object) -> None:
    check(good)
    with pytest.raises(ConfigurationError):
        check(bad)


def test_ids_are_positive_integers_named_in_the_message() -> None:
    assert tmdb_id("movie_id", 603) == 603
    for bad in (0, -1, True, "603", 6.0):
        with pytest.raises(ConfigurationError, match="movie_id"):
            tmdb_id("movie_id", bad)
