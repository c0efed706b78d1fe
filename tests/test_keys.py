"""seerrperf._keys: canonical key encodings, bounded in depth."""

from __future__ import annotations

import pytest

from seerrperf import ConfigurationError, etag_for
from seerrperf._keys import MAX_DEPTH, encode_key


def _nested(depth: int) -> object:
    key: object = "leaf"
    for _ in range(depth):
        key = (key,)
    return key


def test_keys_nest_up_to_the_limit() -> None:
    assert encode_key(_nested(MAX_DEPTH), "a key") != encode_key(_nested(MAX_DEPTH - 1), "a key")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deeper_keys_are_refused_with_a_clear_error(depth: int) -> None:
    # 100,000 levels used to end in a raw RecursionError.
    with pytest.raises(ConfigurationError, match=f"at most {MAX_DEPTH} deep"):
        encode_key(_nested(depth), "an advisory-lock key")


def test_an_etag_of_data_nested_too_deeply_is_a_configuration_error() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(100_000):
        child: list[object] = []
        inner.append(child)
        inner = child
    with pytest.raises(ConfigurationError, match="nests too deeply"):
        etag_for(deep)
