"""A response body within limits: bounded decoding and bounded JSON (pure, no network)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seerrperf._tmdb.body import MAX_JSON_DEPTH, BodyReader, BodyRefused, parse_json

LIMIT = 1000


def read(reader: BodyReader, data: bytes, cuts: list[int]) -> bytes:
    """Feed ``data`` cut at ``cuts`` (as a network would), then finish."""
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if reader.feed(data[start:cut]):
            break
        start = cut
    return reader.finish()


def test_an_identity_body_up_to_the_limit_is_kept() -> None:
    assert read(BodyReader(LIMIT, {}), b"x" * LIMIT, [10, 500]) == b"x" * LIMIT


def test_one_byte_past_the_limit_is_refused() -> None:
    with pytest.raises(BodyRefused, match=r"larger than max_body_bytes \(1000 bytes\)"):
        read(BodyReader(LIMIT, {}), b"x" * (LIMIT + 1), [999])


def test_a_declared_length_past_the_limit_is_refused_before_any_read() -> None:
    with pytest.raises(BodyRefused, match="max_body_bytes"):
        BodyReader(LIMIT, {"Content-Length": str(LIMIT + 1)})
    BodyReader(LIMIT, {"content-length": "junk"})  # lenient: the read still counts


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8), st.booleans())
def test_compressed_bodies_decode_whatever_the_cuts(
    data: bytes, cuts: list[int], as_gzip: bool
) -> None:
    packed = gzip.compress(data) if as_gzip else zlib.compress(data)
    coding = "gzip" if as_gzip else "deflate"
    cuts = [cut for cut in cuts if cut <= len(packed)]
    reader = BodyReader(4096, {"Content-Encoding": coding})
    assert read(reader, packed, cuts) == data


@given(st.integers(LIMIT + 1, 50 * LIMIT), st.lists(st.integers(0, 500), max_size=5))
def test_a_compressed_body_past_the_limit_is_refused_in_decoded_bytes(
    size: int, cuts: list[int]
) -> None:
    packed = gzip.compress(b"0" * size)
    assert len(packed) < LIMIT  # small on the wire, large decoded
    with pytest.raises(BodyRefused, match="max_body_bytes"):
        read(BodyReader(LIMIT, {"content-encoding": "gzip"}), packed, cuts)


def test_a_bomb_is_never_decoded_past_the_limit() -> None:
    class Counting(BodyReader):
        peak = 0

        def _keep(self, data: bytes) -> bool:
            Counting.peak = max(Counting.peak, len(data))
            return super()._keep(data)

    bomb = gzip.compress(b"0" * (64 << 20))  # 64 MB in about 64 KB
    with pytest.raises(BodyRefused):
        Counting(LIMIT, {"content-encoding": "gzip"}).feed(bomb)
    assert Counting.peak <= LIMIT + 1  # zlib was never asked for more than that


def test_raw_deflate_is_accepted_too() -> None:
    raw = zlib.compress(b'{"id": 1}')[2:-4]  # no zlib header: what some servers send
    assert read(BodyReader(LIMIT, {"content-encoding": "deflate"}), raw, []) == b'{"id": 1}'


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, gzip", "compress"])
def test_codings_that_were_not_asked_for_are_refused(coding: str) -> None:
    with pytest.raises(BodyRefused, match="not asked for"):
        BodyReader(LIMIT, {"content-encoding": coding})


def test_broken_compressed_data_is_refused() -> None:
    with pytest.raises(BodyRefused, match="not valid compressed data"):
        read(BodyReader(LIMIT, {"content-encoding": "gzip"}), b"\x1f\x8bjunk" * 10, [])


def test_an_error_body_is_read_only_as_far_as_the_limit() -> None:
    reader = BodyReader(10, {"content-length": str(10**9)}, truncate=True)
    assert reader.feed(b"x" * 6) is False
    assert reader.feed(b"y" * 6) is True  # full: ask for no more
    assert reader.finish() == b"xxxxxxyyyy"
    skipped = BodyReader(10, {"content-encoding": "br"}, truncate=True)
    assert skipped.feed(b"anything") is True
    assert skipped.finish() == b""


def test_a_body_decoded_already_ignores_the_coding_header() -> None:
    reader = BodyReader(LIMIT, {"content-encoding": "gzip"}, decoded=True)
    assert read(reader, b'{"id": 1}', []) == b'{"id": 1}'


# --- JSON -----------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b'{"a": ' * (depth - 1) + b"[1]" + b"}" * (depth - 1)


def test_json_up_to_the_depth_limit_parses_and_deeper_is_refused() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(BodyRefused, match="nested deeper than 64 levels"):
        parse_json(nested(MAX_JSON_DEPTH + 1))


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 500_000 + b"]" * 500_000,  # a RecursionError for the bare parser
        b"[" * 500_000,
        b"[[]" * 100,
    ],
)
def test_deep_or_broken_nesting_is_refused_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(BodyRefused):
        parse_json(body)


def test_brackets_inside_strings_do_not_count() -> None:
    text = {"a": "[[[[{{{{" * 100, "b": '\\"[[[', "c": "\\\\", "d": ["]]]]"]}
    assert parse_json(json.dumps(text).encode()) == text


def test_a_hostile_run_of_quotes_and_backslashes_is_scanned_in_linear_time() -> None:
    # A backtracking pattern for strings is quadratic on this; the scan is linear.
    with pytest.raises(BodyRefused, match="not a JSON object"):
        parse_json(b'"' + b'\\"' * 2_000_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@given(json_values, st.integers(0, 8))
def test_the_depth_scan_agrees_with_the_parsed_document(value: Any, limit: int) -> None:
    body = json.dumps(value).encode()
    if depth_of(value) > limit:
        with pytest.raises(BodyRefused, match="nested deeper"):
            parse_json(body, max_depth=limit)
    else:
        assert parse_json(body, max_depth=limit) == value


@pytest.mark.parametrize("body", [b"<html>", b"", b"\xff\xfe", b'{"a": 1'])
def test_what_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(BodyRefused, match="not a JSON object"):
        parse_json(body)
