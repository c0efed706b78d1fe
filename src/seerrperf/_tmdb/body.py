"""A TMDB response body within limits: bounded decoding and bounded JSON; no I/O.

An upstream decides how big its answer is, and a compressed one can be a
thousand times bigger once decoded (a 255 KB gzip body inflating to 256 MB).
So the transports read the raw bytes as they arrive and feed them to a
:class:`BodyReader`, which decodes them itself with a bound on the output
(httpx's decoders have none: one 64 KB chunk of a gzip bomb becomes 64 MB at
once) and refuses the body the moment its decoded size passes the limit,
before the rest is read. :func:`parse_json` then refuses documents nested
deeper than any TMDB answer, before the parser could recurse into a
``RecursionError``.

What is refused raises :class:`BodyRefused` with a reason; the exchange turns
it into a :class:`~seerrperf.TmdbResponseError`.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_BODY_BYTES",
    "ERROR_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "BodyReader",
    "BodyRefused",
    "parse_json",
]

#: The largest decoded body a 2xx may have by default: 8 MiB. TMDB's largest
#: answers (a long show's ``aggregate_credits`` with ``append_to_response``)
#: stay below 3 MB.
DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
#: How much of an error response is read (for its ``status_message``); the
#: rest is not read, and an error is never refused for its size.
ERROR_BODY_BYTES: Final = 16 * 1024
#: Deepest nesting accepted in a JSON answer; TMDB's go about 5 levels deep.
MAX_JSON_DEPTH: Final = 64
#: The codings a :class:`BodyReader` decodes, sent as ``Accept-Encoding``.
ACCEPT_ENCODING: Final = "gzip, deflate"

_IDENTITY: Final = frozenset({"", "identity"})
_GZIP: Final = frozenset({"gzip", "x-gzip"})


class BodyRefused(Exception):
    """The body is refused; ``str()`` says why, in words safe for a message."""


class _Inflater:
    """zlib decoding of ``gzip`` or ``deflate`` (zlib-wrapped or raw), bounded per call."""

    __slots__ = ("_decoder", "_first", "_raw_fallback")

    def __init__(self, coding: str) -> None:
        # 32 + MAX_WBITS: a gzip or zlib header, detected; raw deflate (sent
        # by some servers for "deflate") is tried when the header is wrong.
        wbits = zlib.MAX_WBITS | 16 if coding in _GZIP else zlib.MAX_WBITS | 32
        self._decoder = zlib.decompressobj(wbits)
        self._raw_fallback = coding not in _GZIP
        self._first = True

    def decode(self, data: bytes, max_length: int) -> bytes:
        """Decode ``data``; return at most ``max_length`` bytes (the rest stays buffered)."""
        try:
            out = self._decoder.decompress(data, max_length)
        except zlib.error:
            if not (self._first and self._raw_fallback):
                raise BodyRefused("the body is not valid compressed data") from None
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_fallback = False
            return self.decode(data, max_length)
        self._first = False
        return out

    def flush(self, max_length: int) -> bytes:
        """Decode what :meth:`decode` left buffered; at most ``max_length`` bytes."""
        tail = self._decoder.unconsumed_tail
        return self.decode(tail, max_length) if tail else b""


class BodyReader:
    """Collects one response body from its raw (undecoded) chunks, within ``limit`` decoded bytes.

    Args:
        limit: Most decoded bytes accepted.
        headers: The response headers (``Content-Encoding``, ``Content-Length``).
        truncate: Keep only the first ``limit`` bytes and ask for no more,
            instead of refusing a longer body (for error responses, read only
            for their message).

    Raises:
        BodyRefused: a coding other than gzip, deflate or identity, or (unless
            ``truncate``) a ``Content-Length`` above the limit. With
            ``truncate``, a body in another coding is skipped (read as empty).
        decoded: The chunks are decoded already (an in-memory response,
            such as ``httpx.MockTransport``'s), whatever the headers say.
    """

    __slots__ = ("_chunks", "_inflater", "_limit", "_size", "_skip", "_truncate")

    def __init__(
        self,
        limit: int,
        headers: Mapping[str, str],
        *,
        truncate: bool = False,
        decoded: bool = False,
    ) -> None:
        self._limit = limit
        self._truncate = truncate
        self._chunks: list[bytes] = []
        self._size = 0
        self._skip = False
        self._inflater: _Inflater | None = None
        coding = "" if decoded else (_header(headers, "content-encoding") or "").strip().lower()
        if decoded:
            pass
        elif coding in _IDENTITY:
            length = (_header(headers, "content-length") or "").strip()
            if not truncate and length.isascii() and length.isdigit() and int(length) > limit:
                raise BodyRefused(f"the body is larger than max_body_bytes ({limit} bytes)")
        elif coding in _GZIP or coding == "deflate":
            self._inflater = _Inflater(coding)
        elif truncate:  # an error's body is only read for its message: skip it
            self._skip = True
        else:  # br, zstd, chains: not asked for (Accept-Encoding), not decoded
            raise BodyRefused("the body has a content-encoding that was not asked for")

    def feed(self, raw: bytes) -> bool:
        """Take the next raw chunk; return True when no more is wanted (truncated).

        Raises:
            BodyRefused: the decoded body passed the limit, or does not decode.
        """
        if self._skip:
            return True
        if self._inflater is None:
            return self._keep(raw)
        # One byte more than there is room for: getting it means the body is too large.
        return self._keep(self._inflater.decode(raw, self._limit - self._size + 1))

    def finish(self) -> bytes:
        """Return the whole decoded body.

        Raises:
            BodyRefused: what is still buffered passes the limit or does not decode.
        """
        if self._inflater is not None and not self._skip and self._size < self._limit + 1:
            self._keep(self._inflater.flush(self._limit - self._size + 1))
        return b"".join(self._chunks)

    def _keep(self, data: bytes) -> bool:
        room = self._limit - self._size
        if len(data) > room:
            if not self._truncate:
                raise BodyRefused(f"the body is larger than max_body_bytes ({self._limit} bytes)")
            data = data[:room]
        self._chunks.append(data)
        self._size += len(data)
        return self._truncate and self._size >= self._limit


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)  # httpx.Headers is case-insensitive; plain dicts may not be
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


# --- JSON ------------------------------------------------------------------------------

# Openers read as +1 and closers as -1 (signed bytes); everything else is dropped.
_DEPTH_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(body: bytes, limit: int) -> bool:
    """Whether ``body`` nests arrays and objects deeper than ``limit``, in linear time.

    Escapes are dropped first (``\\\\`` pairs, then ``\\"``), so every quote
    left delimits a string; the text between the quotes is dropped, then
    everything but brackets; the deepest running sum of +1 per opener and -1
    per closer is the depth. Invalid JSON gets some answer, and the parser
    refuses it afterwards. No regular expression: one could backtrack
    quadratically on a hostile body.
    """
    outside = body.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2]
    steps = b"".join(outside).translate(_DEPTH_STEPS, _NOT_BRACKETS)
    if len(steps) <= limit:
        return False
    if b"\x01" * (limit + 1) in steps:  # the plain bomb, found at C speed
        return True
    return max(itertools.accumulate(memoryview(steps).cast("b"))) > limit


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON body nested at most ``max_depth`` deep.

    Raises:
        BodyRefused: not JSON ("not a JSON object"), or nested too deeply.
    """
    if _too_deep(body, max_depth):
        raise BodyRefused(f"the JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except RecursionError:  # belt and braces: the scan above should have caught it
        raise BodyRefused(f"the JSON is nested deeper than {max_depth} levels") from None
    except ValueError:
        raise BodyRefused("the response is not a JSON object") from None
