"""CacheControl: building (strict), reading a peer's header (lenient or strict), presets."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seerrperf import (
    CacheControl,
    ConfigurationError,
    HeaderParseError,
    SeerrperfError,
    cache_control,
    etag_for,
    immutable_headers,
    no_store_headers,
    private_headers,
    swr_headers,
)
from seerrperf._headers import MAX_SECONDS
from tests.headers.strategies import SETTINGS, header_text, valid_cache_controls

# -- building and round trips ------------------------------------------------------


def test_canonical_header_order() -> None:
    cc = CacheControl(immutable=True, max_age=31_536_000, public=True)
    assert str(cc) == "public, max-age=31536000, immutable"
    assert cc.to_header() == str(cc)
    assert str(CacheControl()) == ""


@SETTINGS
@given(valid_cache_controls())
def test_every_valid_value_round_trips_strictly(cc: CacheControl) -> None:
    header = str(cc)
    assert CacheControl.parse(header) == cc
    assert CacheControl.parse(header, strict=True) == cc
    assert "\r" not in header
    assert "\n" not in header


@SETTINGS
@given(valid_cache_controls(with_extensions=False), st.data())
def test_parse_is_tolerant_of_case_spaces_and_quoted_numbers(
    cc: CacheControl, data: st.DataObject
) -> None:
    # RFC 9111 5.2: names are case-insensitive and arguments may be quoted;
    # RFC 9110 5.6.1: spaces around commas and empty members are allowed.
    sloppy = str(cc).upper()
    sloppy = re.sub(r"=(\d+)", lambda m: f'="{m[1]}"' if data.draw(st.booleans()) else m[0], sloppy)
    sloppy = sloppy.replace(", ", data.draw(st.sampled_from([",", " ,  ", ",\t", ", ,"])))
    assert CacheControl.parse(f" {sloppy} ", strict=True) == cc


@SETTINGS
@given(header_text)
def test_parse_never_raises_and_always_gives_a_valid_value(text: str) -> None:
    cc = CacheControl.parse(text)  # a peer's header: never an exception
    assert CacheControl.parse(str(cc), strict=True) == cc
    try:
        strict = CacheControl.parse(text, strict=True)
    except HeaderParseError as exc:  # and nothing else: never a ConfigurationError
        message = str(exc)
    else:
        assert strict == cc  # strict agrees whenever it accepts
        message = ""
    assert "\r" not in message
    assert "\n" not in message


def test_parse_keeps_unknown_directives_and_reads_qualified_forms_strictly() -> None:
    cc = CacheControl.parse(
        'Max-Age=60, no-cache="Set-Cookie, Authorization", X-Edge-TTL=5, community="UCI", '
        "MAX-AGE=60, beta"
    )
    assert cc == CacheControl(
        no_cache=True,
        max_age=60,
        extensions=(("x-edge-ttl", "5"), ("community", "UCI"), ("beta", None)),
    )
    assert str(cc) == "no-cache, max-age=60, x-edge-ttl=5, community=UCI, beta"
    assert CacheControl.parse('private="Set-Cookie"', strict=True).private is True
    assert CacheControl.parse("").to_header() == ""


def test_parse_clamps_huge_seconds_like_rfc_9111() -> None:
    assert CacheControl.parse("max-age=99999999999999", strict=True).max_age == 2**31
    # Longer than int() converts (4300 digits): still clamped, never a ValueError.
    assert CacheControl.parse("max-age=" + "9" * 5000).max_age == 2**31
    assert CacheControl.parse("max-age=" + "0" * 5000 + "60", strict=True).max_age == 60


def test_extension_values_are_quoted_when_not_tokens() -> None:
    cc = CacheControl(extensions=(("note", "two words"), ("empty", ""), ("flag", None)))
    assert str(cc) == 'note="two words", empty="", flag'


# -- reading a peer's header: lenient by default, strict on request -------------------


@pytest.mark.parametrize(
    ("header", "reading", "named"),
    [
        # Conflicts keep the more restrictive directive (RFC 9111 4.2.1).
        ("public, private", "private", ("public and private",)),
        ("private, s-maxage=600", "private", ("private", "s_maxage")),
        ("no-store, max-age=60", "no-store", ("no_store", "max_age")),
        (
            "no-store, no-cache, must-revalidate, max-age=0",
            "no-cache, no-store, must-revalidate",
            ("no_store", "max_age"),
        ),
        ("no-store, stale-if-error=60, immutable, max-age=9", "no-store", ("no_store",)),
        ("public, immutable", "public", ("immutable needs a positive max_age",)),
        ("immutable, max-age=0", "max-age=0", ("immutable",)),
        ("public, private, s-maxage=600", "private", ("public and private", "s_maxage")),
        # Repeated with different values: stale; the same value twice is fine.
        ("max-age=60, max-age=120", "max-age=0", ("max-age repeated",)),
        ("s-maxage=1, s-maxage=2, public", "public, s-maxage=0", ("s-maxage repeated",)),
        # Invalid delta-seconds read as 0: the response is stale.
        ("max-age=-5", "max-age=0", ("max-age needs whole seconds",)),
        ("max-age=1.5", "max-age=0", ("max-age", "'1.5'")),
        ("max-age", "max-age=0", ("max-age", "no value")),
        ('max-age=""', "max-age=0", ("max-age",)),
        ("max-age=\uff11", "max-age=0", ("max-age",)),
        ("max-age=1_000", "max-age=0", ("max-age",)),
        ("max-age=undefined, public", "public, max-age=0", ("max-age",)),
        ("max-age =3600", "max-age=0", ("malformed directive 'max-age =3600'", "read as 0")),
        ("max-age= 3600", "max-age=0", ("malformed",)),
        ("max-age:3600", "max-age=0", ("malformed",)),
        (
            "s-maxage=1, stale-while-revalidate",
            "s-maxage=1, stale-while-revalidate=0",
            ("stale-while-revalidate",),
        ),
        # A flag with an argument counts when it restricts, not when it allows more.
        ("public=1, max-age=5", "max-age=5", ("public takes no value (ignored)",)),
        ("no-store=1", "no-store", ("no-store takes no value (counted)",)),
        ("must-revalidate x, max-age=5", "max-age=5, must-revalidate", ("malformed", "counted")),
        # Unknown directives: kept when they can be re-emitted safely, else ignored.
        ('foo="a, b", max-age=5', "max-age=5", ("'foo'", "cannot be kept")),
        ('foo="a\\"b", max-age=5', "max-age=5", ("'foo'",)),
        ('foo="caf\u00e9", bar=1', "bar=1", ("'foo'",)),
        ("x=1, x=2", "x=1", ("'x' repeated",)),
        # Not a directive at all.
        ("public; max-age=60", "", ("malformed",)),
        ("a b, no-cache", "no-cache", ("malformed directive 'a b' (ignored)",)),
        ("=5, no-cache", "no-cache", ("malformed",)),
        ('foo="open, max-age=60', "", ("unterminated",)),
        ('max-age=60, foo="open', "max-age=60", ("unterminated",)),
        # CR, LF and NUL are read as spaces (RFC 9110 5.5): no smuggled line.
        ("max-age=60\r\nSet-Cookie: a=1", "max-age=0", ("CR, LF or NUL",)),
        ("no-store\r\n, public", "public, no-store", ("CR, LF or NUL",)),
    ],
)
def test_a_peers_header_reads_as_its_most_restrictive_meaning(
    header: str, reading: str, named: tuple[str, ...]
) -> None:
    assert str(CacheControl.parse(header)) == reading
    with pytest.raises(HeaderParseError) as info:
        CacheControl.parse(header, strict=True)
    assert not isinstance(info.value, ConfigurationError)
    for word in named:
        assert word in str(info.value)


def test_no_store_wins_even_with_must_understand() -> None:
    # RFC 9111 5.2.2.3's example; a cache that knows the status code may store
    # it, but the most restrictive reading for anyone else is no-store.
    assert CacheControl.parse("must-understand, no-store", strict=True) == CacheControl(
        must_understand=True, no_store=True
    )


def test_header_parse_error_is_a_peer_error_not_a_configuration_error() -> None:
    assert issubclass(HeaderParseError, SeerrperfError)
    assert issubclass(HeaderParseError, ValueError)
    assert not issubclass(HeaderParseError, ConfigurationError)
    assert not issubclass(ConfigurationError, HeaderParseError)


def test_strict_message_is_escaped_and_bounded() -> None:
    hostile = "max-age=x\r\nSet-Cookie: session=" + "A" * 10_000 + ", " + ", ".join(["b c"] * 100)
    with pytest.raises(HeaderParseError) as info:
        CacheControl.parse(hostile, strict=True)
    message = str(info.value)
    assert "\r" not in message
    assert "\n" not in message
    assert "A" * 100 not in message
    assert len(message) < 500
    assert "more" in message  # the rest of the problems are counted, not listed


def test_a_reemitted_header_cannot_smuggle_a_directive() -> None:
    # An image proxy that parses the upstream header and sends str() of it on.
    cc = CacheControl.parse('public, max-age=60, x="1, s-maxage=99999", y="a\\", private"')
    assert str(cc) == "public, max-age=60"


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: CacheControl.parse(None), "value must be a str"),  # type: ignore[arg-type]
        (lambda: CacheControl.parse(b"max-age=1"), "value must be a str"),  # type: ignore[arg-type]
        (lambda: CacheControl.parse("max-age=1", strict=1), "strict must be True or False"),  # type: ignore[arg-type]
    ],
)
def test_parse_refuses_wrong_argument_types_as_programming_errors(
    call: Callable[[], object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        call()


# -- building is strict -------------------------------------------------------------


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
        (lambda: private_headers(False), "max_age must be a whole number of seconds"),
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
