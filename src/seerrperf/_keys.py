"""Canonical key encodings: the same bytes for the same key in every process, host and release.

Anything that hashes a key across processes -- PostgreSQL advisory-lock ids,
the shared cache tier's Redis keys -- hashes :func:`encode_key`'s bytes, never
Python's ``hash()`` (randomised per process for ``str`` and ``bytes``) and
never a server's internal hash function (which may change between versions).
"""

from __future__ import annotations

from seerrperf._errors import ConfigurationError

__all__ = ["KEY_TYPES", "encode_key", "frame"]

KEY_TYPES = "str, int, bytes, bool, None or a tuple of those"
"""What :func:`encode_key` accepts, as messages name it."""

MAX_DEPTH = 32
"""How deeply tuples may nest in a key: far more than any real key, far less
than Python's recursion limit."""


def frame(tag: bytes, payload: bytes) -> bytes:
    """``payload`` behind a one-byte ``tag`` and its length.

    Tag and length make the encoding self-delimiting, hence injective: two
    different sequences of frames never concatenate to the same bytes.
    """
    return tag + str(len(payload)).encode() + b":" + payload


def encode_key(key: object, purpose: str, _depth: int = 0) -> bytes:
    """Return the canonical bytes of ``key``.

    ``True`` and ``1`` (equal in Python) encode differently, as do ``"a"``
    and ``b"a"``; an ``int`` subclass encodes as its value; tuples nest.

    Args:
        key: A str, int, bytes, bool, None or a (nested) tuple of those.
        purpose: What the key is for, as the message names it (``"an
            advisory-lock key"``).

    Raises:
        ConfigurationError: ``key`` (or an item of it) is of another type.
    """
    if key is None:
        return b"N"
    if isinstance(key, bool):
        return b"T" if key else b"F"
    if isinstance(key, int):
        n = int(key)
        return frame(b"i", n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))
    if isinstance(key, str):
        return frame(b"s", key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes):
        return frame(b"b", bytes(key))
    if isinstance(key, tuple):
        if _depth >= MAX_DEPTH:
            raise ConfigurationError(
                f"key must nest tuples at most {MAX_DEPTH} deep ({purpose} is hashed recursively)"
            )
        return frame(b"t", b"".join(encode_key(item, purpose, _depth + 1) for item in key))
    raise ConfigurationError(
        f"key must be {KEY_TYPES}, got {type(key).__name__} "
        f"({purpose} must hash the same in every process)"
    )
