"""Cache-Control, ETag, HTTP dates, 304 decisions and the Starlette glue."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header

from media_app import serve
from seerrperf import (
    CacheControl,
    ConfigurationError,
    cache_control,
    etag_for,
    http_date,
    immutable_headers,
    is_not_modified,
    no_store_headers,
    private_headers,
    swr_headers,
)
from seerrperf._headers import MAX_SECONDS
from seerrperf.starlette import json_response

SETTINGS = settings(max_examples=150, deadline=None)

FLAGS = (
    "public",
    "private",
    "no_cache",
    "no_store",
    "must_revalidate",
    "proxy_revalidate",
    "must_understand",
    "no_transform",
    "immutable",
)
SECONDS = ("max_age", "s_maxage", "stale_while_revalidate", "stale_if_error")
KNOWN = {name.replace("_", "-") for name in FLAGS + SECONDS}

# Extension names without "*": werkzeug reads "name*=" as an RFC 2231
# parameter, which is not a Cache-Control rule.
extension_names = st.from_regex(r"[!#$%&'+\-.^_`|~0-9a-z]+", fullmatch=True).filter(
    lambda name: name not in KNOWN
)
extension_values = st.none() | st.from_regex(r"[ !#-+\--\[\]-~]*", fullmatch=True)
extensions = st.lists(
    st.tuples(extension_names, extension_values), max_size=3, unique_by=lambda pair: pair[0]
).map(tuple)
seconds = st.none() | st.integers(0, MAX_SECONDS)


@st.composite
def valid_cache_controls(draw: st.DrawFn, *, with_extensions: bool = True) -> CacheControl:
    """Any combination of directives, repaired so that it obeys every rule."""
    values: dict[str, Any] = {name: draw(st.booleans()) for name in FLAGS}
    values.update({name: draw(seconds) for name in SECONDS})
    if values["public"] and values["private"]:
        values[draw(st.sampled_from(["public", "private"]))] = False
    if values["no_store"]:
        values.update(dict.fromkeys(SECONDS), immutable=False)
    if values["private"]:
        values["s_maxage"] = None
    if values["immutable"] and not values["max_age"]:
        values["max_age"] = draw(st.integers(1, MAX_SECONDS))
    if with_extensions:
        values["extensions"] = draw(extensions)
    return CacheControl(**values)


# -- CacheControl: building, parsing, round trips -------------------------------


def test_canonical_header_order() -> None:
    cc = CacheControl(immutable=True, max_age=31_536_000, public=True)
    assert str(cc) == "public, max-age=31536000, immutable"
    assert cc.to_header() == str(cc)
    assert str(CacheControl()) == ""


@SETTINGS
@given(valid_cache_controls())
def test_every_valid_value_round_trips(cc: CacheControl) -> None:
    header = str(cc)
    assert CacheControl.parse(header) == cc
    assert "\r" not in header
    assert "\n" not in header


@SETTINGS
@given(valid_cache_controls())
def test_werkzeug_reads_every_header_identically(cc: CacheControl) -> None:
    theirs = parse_cache_control_header(str(cc), cls=ResponseCacheControl)
    assert theirs.public is cc.public
    assert (theirs.private is True) is cc.private
    assert (theirs.no_cache is True) is cc.no_cache
    assert theirs.no_store is cc.no_store
    assert theirs.must_revalidate is cc.must_revalidate
    assert theirs.proxy_revalidate is cc.proxy_revalidate
    assert theirs.must_understand is cc.must_understand
    assert theirs.no_transform is cc.no_transform
    assert theirs.immutable is cc.immutable
    assert theirs.max_age == cc.max_age
    assert theirs.s_maxage == cc.s_maxage
    assert theirs.stale_while_revalidate == cc.stale_while_revalidate
    assert theirs.stale_if_error == cc.stale_if_error
    assert {k: v for k, v in theirs.items() if k not in KNOWN} == dict(cc.extensions)


@SETTINGS
@given(valid_cache_controls(with_extensions=False), st.data())
def test_parse_is_tolerant_of_case_spaces_and_quoted_numbers(
    cc: CacheControl, data: st.DataObject
) -> None:
    sloppy = str(cc).upper()
    sloppy = re.sub(
        r"=(\d+)", lambda m: data.draw(st.sampled_from(["=", " = "])) + f'"{m[1]}"', sloppy
    )
    sloppy = sloppy.replace(", ", data.draw(st.sampled_from([",", " ,  ", ",\t", ", ,"])))
    assert CacheControl.parse(f" {sloppy} ") == cc


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list('abcm-x=", \\\t\r\n09AG*')), max_size=30))
def test_parse_accepts_or_refuses_any_text_cleanly(text: str) -> None:
    try:
        cc = CacheControl.parse(text)
    except ConfigurationError:
        return
    assert CacheControl.parse(str(cc)) == cc


def test_parse_keeps_unknown_directives_and_reads_qualified_forms_strictly() -> None:
    cc = CacheControl.parse(
        'Max-Age=60, no-cache="Set-Cookie, Authorization", X-Edge-TTL=5, community="UCI", '
        "MAX-AGE=999, beta"
    )
    assert cc == CacheControl(
        no_cache=True,
        max_age=60,
        extensions=(("x-edge-ttl", "5"), ("community", "UCI"), ("beta", None)),
    )
    assert str(cc) == "no-cache, max-age=60, x-edge-ttl=5, community=UCI, beta"
    assert CacheControl.parse('private="Set-Cookie"').private is True
    assert CacheControl.parse("").to_header() == ""


def test_parse_clamps_huge_seconds_like_rfc_9111() -> None:
    assert CacheControl.parse("max-age=99999999999999").max_age == 2**31


def test_extension_values_are_quoted_when_not_tokens() -> None:
    cc = CacheControl(extensions=(("note", "two words"), ("empty", ""), ("flag", None)))
    assert str(cc) == 'note="two words", empty="", flag'


# -- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"public": True, "private": True}, ("public", "private")),
        ({"no_store": True, "max_age": 60}, ("no_store", "max_age")),
        ({"no_store": True, "s_maxage": 60}, ("no_store", "s_maxage")),
        ({"no_store": True, "stale_while_revalidate": 60}, ("no_store", "stale_while_revalidate")),
        ({"no_store": True, "stale_if_error": 60}, ("no_store", "stale_if_error")),
        ({"no_store": True, "max_age": 0}, ("no_store", "max_age")),
        ({"no_store": True, "immutable": True}, ("no_store", "immutable")),
        ({"private": True, "s_maxage": 600}, ("private", "s_maxage")),
        ({"immutable": True}, ("immutable", "max_age")),
        ({"immutable": True, "max_age": 0}, ("immutable", "max_age")),
        ({"immutable": True, "s_maxage": 60}, ("immutable", "max_age")),
        ({"max_age": -1}, ("max_age",)),
        ({"max_age": 1.5}, ("max_age",)),
        ({"max_age": "60"}, ("max_age",)),
        ({"max_age": True}, ("max_age",)),
        ({"max_age": MAX_SECONDS + 1}, ("max_age",)),
        ({"s_maxage": -5}, ("s_maxage",)),
        ({"stale_while_revalidate": -1}, ("stale_while_revalidate",)),
        ({"stale_if_error": 2.0}, ("stale_if_error",)),
        ({"public": "yes"}, ("public",)),
        ({"extensions": (("foo", "a, b"),)}, ("foo", "comma")),
        ({"extensions": (("foo", "1\r\nSet-Cookie: x=1"),)}, ("foo", "CR, LF")),
        ({"extensions": (("foo", "a\nb"),)}, ("foo", "LF")),
        ({"extensions": (("foo", 'a"b'),)}, ("foo",)),
        ({"extensions": (("foo", "a\\b"),)}, ("foo",)),
        ({"extensions": (("foo", "caf\u00e9"),)}, ("foo", "ASCII")),
        ({"extensions": (("Foo", None),)}, ("Foo", "lower-case")),
        ({"extensions": (("a b", None),)}, ("a b", "token")),
        ({"extensions": (("x\r\nSet-Cookie", None),)}, ("Set-Cookie", "token")),
        ({"extensions": (("max-age", "5"),)}, ("max-age", "known directive")),
        ({"extensions": (("foo", None), ("foo", "1"))}, ("duplicate", "foo")),
        ({"extensions": [("foo", None)]}, ("extensions", "tuple")),
        ({"extensions": (("foo",),)}, ("extensions", "pairs")),
    ],
)
def test_invalid_combinations_raise_naming_them(
    kwargs: dict[str, Any], named: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheControl(**kwargs)
    for word in named:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("public, private", ("public", "private")),
        ("private, s-maxage=60", ("private", "s_maxage")),
        ("no-store, max-age=60", ("no_store", "max_age")),
        ("immutable", ("immutable",)),
        ("max-age=-5", ("max-age",)),
        ("max-age=1.5", ("max-age",)),
        ("max-age", ("max-age",)),
        ("max-age=\uff11", ("max-age",)),
        ("max-age=1_000", ("max-age",)),
        ("public=1", ("public", "no value")),
        ('foo="a, b"', ("foo", "comma")),
        ('foo="a\\"b"', ("foo",)),
        ("max-age=60\r\nSet-Cookie: a=1", ("control character",)),
        ('foo="open', ("unterminated",)),
        ("a b", ("malformed",)),
        ("=5", ("malformed",)),
    ],
)
def test_parse_refuses_bad_headers_naming_the_problem(header: str, named: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as info:
        CacheControl.parse(header)
    for word in named:
        assert word in str(info.value)


@SETTINGS
@given(st.text(max_size=10), st.sampled_from([",", "\r", "\n", "\r\n"]), st.text(max_size=10))
def test_no_injection_through_extension_values(before: str, bad: str, after: str) -> None:
    with pytest.raises(ConfigurationError):
        CacheControl(extensions=(("x-note", before + bad + after),))


def test_cache_control_is_frozen_and_hashable() -> None:
    cc = CacheControl(public=True, max_age=60)
    with pytest.raises(AttributeError):
        cc.max_age = 5  # type: ignore[misc]
    assert len({cc, CacheControl(public=True, max_age=60)}) == 1


# -- presets -----------------------------------------------------------------------


def test_cache_control_function_builds_and_validates() -> None:
    assert cache_control(public=True, max_age=60, stale_while_revalidate=600) == (
        "public, max-age=60, stale-while-revalidate=600"
    )
    with pytest.raises(ConfigurationError, match="public and private"):
        cache_control(public=True, private=True)


def test_immutable_headers() -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert immutable_headers(now=now) == {
        "Cache-Control": "public, max-age=31536000, immutable",
        "Expires": "Mon, 01 Mar 2027 12:00:00 GMT",
    }
    assert immutable_headers(60, now=now)["Expires"] == "Sun, 01 Mar 2026 12:01:00 GMT"
    expires = parsedate_to_datetime(immutable_headers(3600)["Expires"])
    assert dt.timedelta(minutes=59) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    with pytest.raises(ConfigurationError, match="max_age"):
        immutable_headers(0)
    with pytest.raises(ConfigurationError, match="naive"):
        immutable_headers(now=dt.datetime(2026, 3, 1))


def test_swr_headers() -> None:
    assert swr_headers(60, 600) == {
        "Cache-Control": "public, max-age=60, stale-while-revalidate=600"
    }
    assert swr_headers(60, 600, stale_if_error=86_400, shared=False) == {
        "Cache-Control": "private, max-age=60, stale-while-revalidate=600, stale-if-error=86400"
    }
    with pytest.raises(ConfigurationError, match="stale_while_revalidate"):
        swr_headers(60, -1)


def test_private_and_no_store_headers_never_reach_shared_caches() -> None:
    assert private_headers() == {"Cache-Control": "private, no-cache"}
    assert private_headers(30) == {"Cache-Control": "private, max-age=30"}
    assert "s-maxage" not in private_headers(30)["Cache-Control"]
    assert no_store_headers() == {"Cache-Control": "no-store"}
    with pytest.raises(ConfigurationError, match="max_age"):
        private_headers(-1)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: private_headers(False), "max_age must be a whole number of seconds"),  # type: ignore[arg-type]
        (lambda: private_headers(1.5), "max_age must be a whole number of seconds"),  # type: ignore[arg-type]
        (lambda: etag_for(b"x", weak="no"), "weak must be True or False"),  # type: ignore[arg-type]
        (lambda: swr_headers(60, 60, shared=1), "shared must be True or False"),  # type: ignore[arg-type]
        (lambda: cache_control(max_age=10**400), "max_age must be at most"),
        (lambda: cache_control(public="yes"), "public must be True or False"),  # type: ignore[arg-type]
    ],
)
def test_builders_refuse_wrong_types_naming_the_argument(
    call: Callable[[], object], named: str
) -> None:
    # A truthy stand-in (1, "no") must not silently pick a meaning.
    with pytest.raises(ConfigurationError, match=named):
        call()


# -- ETag and dates ----------------------------------------------------------------


def test_etag_for_is_a_truncated_sha256_of_canonical_bytes() -> None:
    digest = hashlib.sha256(b"hello").hexdigest()[:32]
    assert etag_for(b"hello") == f'"{digest}"'
    assert etag_for("hello") == etag_for(bytearray(b"hello")) == etag_for(memoryview(b"hello"))
    assert etag_for(b"hello", weak=True) == f'W/"{digest}"'
    assert etag_for({"b": 2, "a": [1, "\u00e9"]}) == etag_for('{"a":[1,"\u00e9"],"b":2}')
    assert etag_for({"a": 1}) != etag_for({"a": 2})
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag_for([1, 2, 3]))  # 128 bits


@pytest.mark.parametrize("bad", [object(), {"a": float("nan")}, {1: 2, "a": 3}, {1, 2}])
def test_etag_for_refuses_data_without_a_canonical_form(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="JSON-serialisable"):
        etag_for(bad)


def test_etag_for_is_stable_across_processes() -> None:
    data = {"title": "Am\u00e9lie", "ids": list(range(20)), "nested": {"z": None, "a": True}}
    code = f"from seerrperf import etag_for; print(etag_for({data!r}))"
    tags = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert tags == {etag_for(data)}


def test_http_date_rfc_9110_example() -> None:
    when = dt.datetime(1994, 11, 6, 8, 49, 37, 999_999, tzinfo=dt.UTC)
    assert http_date(when) == "Sun, 06 Nov 1994 08:49:37 GMT"
    paris = dt.timezone(dt.timedelta(hours=1))
    assert http_date(dt.datetime(1994, 11, 6, 9, 49, 37, tzinfo=paris)) == http_date(when)
    with pytest.raises(ConfigurationError, match="naive"):
        http_date(dt.datetime(1994, 11, 6))


@SETTINGS
@given(st.datetimes(min_value=dt.datetime(1000, 1, 1), timezones=st.just(dt.UTC)))
def test_http_date_agrees_with_the_standard_library(when: dt.datetime) -> None:
    assert http_date(when) == format_datetime(when.replace(microsecond=0), usegmt=True)
    assert parsedate_to_datetime(http_date(when)) == when.replace(microsecond=0)


def test_importing_seerrperf_does_not_import_starlette() -> None:
    code = "import sys, seerrperf; print('starlette' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# -- is_not_modified: RFC 9110 ---------------------------------------------------

LAST_MODIFIED = dt.datetime(1994, 10, 29, 19, 43, 31, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("sent", "current", "matches"),
    [  # RFC 9110 8.8.3.2: the weak comparison column
        ('W/"1"', 'W/"1"', True),
        ('W/"1"', 'W/"2"', False),
        ('W/"1"', '"1"', True),
        ('"1"', 'W/"1"', True),
        ('"1"', '"1"', True),
        ('"1"', '"2"', False),
    ],
)
def test_if_none_match_uses_weak_comparison(sent: str, current: str, matches: bool) -> None:
    assert is_not_modified({"If-None-Match": sent}, etag=current) is matches


@pytest.mark.parametrize(
    ("header", "matches"),
    [  # RFC 9110 13.1.2 examples, current tag "r2d2xxxx"
        ('"xyzzy"', False),
        ('W/"xyzzy"', False),
        ('"xyzzy", "r2d2xxxx", "c3piozzzz"', True),
        ('W/"xyzzy", W/"r2d2xxxx", W/"c3piozzzz"', True),
        ('"xyzzy","r2d2xxxx"', True),
        ("*", True),
        ('"r2d2"', False),
        ("r2d2xxxx", False),  # unquoted: not an entity tag
    ],
)
def test_if_none_match_lists_and_star(header: str, matches: bool) -> None:
    assert is_not_modified({"If-None-Match": header}, etag='"r2d2xxxx"') is matches


def test_if_none_match_details() -> None:
    assert is_not_modified({"if-none-match": "*"})  # any current representation
    assert not is_not_modified({"If-None-Match": '"a"'})  # no tag to match
    assert is_not_modified({"IF-NONE-MATCH": '"x", "a,b"'}, etag='"a,b"')  # commas inside tags
    two_lines = Headers(raw=[(b"if-none-match", b'"x"'), (b"if-none-match", b'"y"')])
    assert is_not_modified(two_lines, etag='"y"')
    assert not is_not_modified({}, etag='"y"', last_modified=LAST_MODIFIED)


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    since = "Sat, 29 Oct 1994 19:43:31 GMT"
    stale_tag = {"If-None-Match": '"old"', "If-Modified-Since": since}
    assert not is_not_modified(stale_tag, etag='"new"', last_modified=LAST_MODIFIED)
    later = {"If-None-Match": '"new"', "If-Modified-Since": "Sat, 01 Jan 1994 00:00:00 GMT"}
    assert is_not_modified(later, etag='"new"', last_modified=LAST_MODIFIED)


@pytest.mark.parametrize(
    ("since", "matches"),
    [
        ("Sat, 29 Oct 1994 19:43:31 GMT", True),  # RFC 9110 13.1.3 example: equal
        ("Sat, 29 Oct 1994 19:43:32 GMT", True),  # later than the change
        ("Sat, 29 Oct 1994 19:43:30 GMT", False),  # changed since
        ("Saturday, 29-Oct-94 19:43:31 GMT", True),  # obsolete rfc850-date
        ("Sat Oct 29 19:43:31 1994", True),  # obsolete asctime-date
        ("Sat, 29 Oct 1994 19:43:31 +0000", False),  # not an HTTP-date: ignored
        ("Sat, 31 Feb 1994 19:43:31 GMT", False),
        ("Sat, \u0662\u0669 Oct 1994 19:43:31 GMT", False),  # non-ASCII digits
        ("Sat, 29 Oct 1994 19:43:31 GMT, Sat, 29 Oct 1994 19:43:31 GMT", False),
        ("yesterday", False),
        ("", False),
    ],
)
def test_if_modified_since(since: str, matches: bool) -> None:
    assert is_not_modified({"If-Modified-Since": since}, last_modified=LAST_MODIFIED) is matches


def test_if_modified_since_compares_whole_seconds() -> None:
    changed = LAST_MODIFIED.replace(microsecond=500_000)
    assert is_not_modified({"If-Modified-Since": http_date(changed)}, last_modified=changed)
    asctime = {"If-Modified-Since": "Sun Nov  6 08:49:37 1994"}
    assert is_not_modified(
        asctime, last_modified=dt.datetime(1994, 11, 6, 8, 49, 37, tzinfo=dt.UTC)
    )
    assert not is_not_modified({"If-Modified-Since": http_date(changed)})  # nothing to compare


def test_rfc850_two_digit_years() -> None:
    since = {"If-Modified-Since": "Monday, 01-Jan-01 00:00:00 GMT"}
    assert is_not_modified(since, last_modified=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    assert not is_not_modified(since, last_modified=dt.datetime(2001, 1, 1, 0, 0, 1, tzinfo=dt.UTC))
    since = {"If-Modified-Since": "Thursday, 01-Jan-70 00:00:00 GMT"}
    assert is_not_modified(since, last_modified=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    assert not is_not_modified(since, last_modified=dt.datetime(2070, 1, 1, tzinfo=dt.UTC))


def test_is_not_modified_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="entity tag"):
        is_not_modified({}, etag="abc")
    with pytest.raises(ConfigurationError, match="entity tag"):
        is_not_modified({}, etag='"a"\r\nSet-Cookie: x=1')
    with pytest.raises(ConfigurationError, match="last_modified"):
        is_not_modified({}, last_modified=dt.datetime(2026, 1, 1))


# -- Starlette glue ----------------------------------------------------------------

MOVIE = {"id": 438631, "title": "Dune", "genres": ["Science Fiction", "Adventure"]}
PUBLIC = CacheControl(public=True, max_age=60, stale_while_revalidate=600)


async def movie(request: Request) -> Response:
    status = int(request.query_params.get("status", "200"))
    return json_response(
        request,
        MOVIE,
        cache_control=PUBLIC,
        status_code=status,
        headers={"Vary": "Accept-Encoding"},
        weak=request.query_params.get("weak") == "1",
    )


async def dated(request: Request) -> Response:
    private = CacheControl(private=True, no_cache=True)
    return json_response(request, MOVIE, cache_control=private, last_modified=LAST_MODIFIED)


app = Starlette(
    routes=[Route("/movie", movie, methods=["GET", "HEAD", "POST"]), Route("/dated", dated)]
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


@pytest.mark.anyio
async def test_json_response_sends_validators_and_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/movie")
    assert first.status_code == 200
    assert first.json() == MOVIE
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert first.headers["etag"] == etag_for(MOVIE) == etag_for(first.content)
    second = await client.get("/movie", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 304
    assert second.content == b""
    assert "content-type" not in second.headers
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["cache-control"] == first.headers["cache-control"]
    assert second.headers["vary"] == "Accept-Encoding"
    head = await client.head("/movie", headers={"If-None-Match": "*"})
    assert head.status_code == 304


@pytest.mark.anyio
async def test_json_response_weak_tags_and_unsafe_methods(client: httpx.AsyncClient) -> None:
    weak = await client.get("/movie?weak=1")
    assert weak.headers["etag"] == etag_for(MOVIE, weak=True)
    strong_form = weak.headers["etag"].removeprefix("W/")
    again = await client.get("/movie?weak=1", headers={"If-None-Match": strong_form})
    assert again.status_code == 304
    post = await client.post("/movie", headers={"If-None-Match": weak.headers["etag"]})
    assert post.status_code == 200
    assert post.json() == MOVIE


@pytest.mark.anyio
@pytest.mark.parametrize("status", [404, 500, 503, 302])
async def test_errors_are_never_304_and_never_cacheable(
    client: httpx.AsyncClient, status: int
) -> None:
    response = await client.get(f"/movie?status={status}", headers={"If-None-Match": "*"})
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers
    assert response.json() == MOVIE


@pytest.mark.anyio
async def test_json_response_last_modified(client: httpx.AsyncClient) -> None:
    first = await client.get("/dated")
    assert first.headers["last-modified"] == "Sat, 29 Oct 1994 19:43:31 GMT"
    assert first.headers["cache-control"] == "private, no-cache"
    second = await client.get(
        "/dated", headers={"If-Modified-Since": first.headers["last-modified"]}
    )
    assert second.status_code == 304
    assert second.headers["last-modified"] == first.headers["last-modified"]


def test_json_response_refuses_headers_it_owns() -> None:
    request = Request({"type": "http", "method": "GET", "headers": []})
    with pytest.raises(ConfigurationError, match="Cache-Control"):
        json_response(request, MOVIE, cache_control=PUBLIC, headers={"Cache-Control": "public"})


@pytest.mark.anyio
async def test_real_socket_second_request_gets_304() -> None:
    # The example app's in-loop uvicorn runner: a real socket on 127.0.0.1.
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        first = await http.get("/movie")
        second = await http.get("/movie", headers={"If-None-Match": first.headers["etag"]})
    assert first.status_code == 200
    assert first.json() == MOVIE
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers.get("content-length", "0") == "0"
