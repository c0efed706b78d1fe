"""ETags, HTTP dates and the 304 decision (RFC 9110), with request headers read leniently."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import subprocess
import sys
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from seerrperf import ConfigurationError, etag_for, http_date, is_not_modified
from tests.headers.strategies import SETTINGS

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
        # Only the whole field value "*" is the wildcard (RFC 9110 13.1.2).
        (" *\t", True),
        ("x*", False),
        ("W/*", False),
        ('"xyzzy", *', False),
        ('*, "xyzzy"', False),
        ('*, "r2d2xxxx"', True),  # the valid member still matches
        ('"*"', False),  # an entity tag whose opaque value is "*"
        # Malformed members never match, even when they contain the tag.
        ('x"r2d2xxxx"', False),
        ('W/W/"r2d2xxxx"', False),
        ('w/"r2d2xxxx"', False),  # "W/" is case-sensitive
        ('"r2d2xxxx', False),  # unterminated
        ('"r2d2xxxx"x', False),
    ],
)
def test_if_none_match_lists_and_star(header: str, matches: bool) -> None:
    assert is_not_modified({"If-None-Match": header}, etag='"r2d2xxxx"') is matches


member_pieces = st.sampled_from(['"a"', 'W/"a"', '"b"', '"a,b"', "*", "x*", "W/*", "x", "W/", ""])
members = st.lists(st.lists(member_pieces, max_size=2).map("".join), max_size=4)


@SETTINGS
@given(members, st.sampled_from([",", ", ", " ,\t"]), st.sampled_from(["", " ", "\t "]))
def test_if_none_match_matches_only_a_whole_member_or_a_lone_star(
    sent: list[str], separator: str, padding: str
) -> None:
    header = padding + separator.join(sent) + padding
    expected = header.strip(" \t") == "*" or bool({'"a"', 'W/"a"'} & set(sent))
    assert is_not_modified({"If-None-Match": header}, etag='"a"') is expected
    assert is_not_modified({"If-None-Match": header}) is (header.strip(" \t") == "*")


@SETTINGS
@given(st.text(max_size=40))
def test_if_none_match_from_a_peer_never_raises(header: str) -> None:
    assert isinstance(is_not_modified({"If-None-Match": header}, etag='W/"a"'), bool)


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=40))
def test_any_request_headers_are_read_without_raising(since: str, name: str) -> None:
    headers = {"If-Modified-Since": since, name: since}
    result = is_not_modified(headers, last_modified=LAST_MODIFIED)
    assert isinstance(result, bool)


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
