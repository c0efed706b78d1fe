"""Hypothesis strategies for Cache-Control values, shared by the header tests."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from seerrperf import CacheControl
from seerrperf._headers import MAX_SECONDS

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


# Text built from the pieces that make Cache-Control parsing hard.
header_pieces = st.sampled_from(
    [
        *KNOWN,
        *'abcmx-=", \\\t\r\n09;*\x00\x7f\x80\u00e9\uff11',
        "=60",
        '="60"',
        ", ",
        '"a, b"',
        '"a\\"b"',
    ]
)
header_text = st.lists(header_pieces, max_size=25).map("".join) | st.text(max_size=40)
