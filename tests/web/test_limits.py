"""Body limits and relative redirects: the pure decisions every integration shares."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seerrperf import ConfigurationError
from seerrperf._web import BodyCounter, declared_length, relative_location


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (None, None),
        ("0", 0),
        ("42", 42),
        (b"42", 42),
        (" 42 ", 42),
        ("42, 42", 42),  # RFC 9110 8.6: identical repeated values
        ("42,42 ,42", 42),
        ("42, 43", None),
        ("", None),
        ("-1", None),
        ("+1", None),
        ("0x10", None),
        ("1e3", None),
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: isdigit(), not ASCII
        ("4 2", None),
        ("123456789012345678", 123456789012345678),
        ("1234567890123456789", 2**63),  # longer than 18 digits: more than any limit
        ("9" * 5000, 2**63),  # int() would refuse more than 4300 digits
        ("0" * 30 + "7", 7),
    ],
)
def test_declared_length_is_read_leniently(value: str | bytes | None, length: int | None) -> None:
    assert declared_length(value) == length


def test_a_huge_declared_length_is_too_large_for_any_limit() -> None:
    assert BodyCounter(2**53).too_large(declared_length("9" * 5000))


@given(st.text(max_size=30))
def test_declared_length_never_raises(value: str) -> None:
    result = declared_length(value)
    assert result is None or result >= 0


def test_the_counter_refuses_at_the_first_byte_over() -> None:
    counter = BodyCounter(10)
    assert not counter.too_large(None)
    assert not counter.too_large(10)
    assert counter.too_large(11)
    assert not counter.add(6)
    assert not counter.add(4)
    assert counter.add(1)
    assert counter.received == 11
    assert BodyCounter(0).add(1)
    for bad in (-1, 2**53 + 1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_body_size"):
            BodyCounter(bad)  # type: ignore[arg-type]


# --- relative redirects -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host", "expected"),
    [
        ("http://evil.example/api/health/", "evil.example", "/api/health/"),
        ("http://EVIL.example:8000/a?b=1#c", "evil.example:8000", "/a?b=1#c"),
        ("http://evil.example", "evil.example", "/"),
        # A path that would read as another host, or that browsers rewrite into one.
        ("http://h//evil.example/", "h", "/%2Fevil.example/"),
        ("http://h/\\evil.example/", "h", "/%5Cevil.example/"),
        ("http://h/\t/evil.example/", "h", "/%2Fevil.example/"),  # urlsplit drops tabs
        ("http://h/ x", "h", "/%20x"),
        ("http://h/caf\u00e9", "h", "/caf%C3%A9"),
        ("http://h/a%2Fb", "h", "/a%2Fb"),
        # Not the request's own origin: left alone.
        ("https://h/secure", "h", "https://h/secure"),
        ("http://other.example/x", "h", "http://other.example/x"),
        ("/already/relative", "h", "/already/relative"),
        ("http://h/x", None, "http://h/x"),
        ("http://[::1/x", "h", "http://[::1/x"),  # unparsable: unchanged
    ],
)
def test_redirects_to_the_own_host_become_relative(
    location: str, host: str | None, expected: str
) -> None:
    assert relative_location(location, scheme="http", host=host) == expected


@given(st.text(max_size=40))
def test_a_relative_redirect_never_names_another_host(path: str) -> None:
    result = relative_location(f"http://h/{path}", scheme="http", host="h")
    # Resolved the way a browser does (tabs and newlines dropped, \ as /):
    cleaned = result.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    resolved = urllib.parse.urljoin("http://victim.example/page", cleaned)
    assert urllib.parse.urlsplit(resolved).netloc == "victim.example"
