"""Where everything lives in Redis, and the invalidation messages; no I/O.

Every name starts with ``<namespace>:v1:`` (``v1``: the layout's version, so
a future layout never misreads this one):

- ``e:<cache>:<digest>`` -- an entry: a hash with the generation it was
  written in (``g``), its fresh-until time in server milliseconds (``f``),
  the serializer's name (``s``) and the data (``d``). Its Redis expiry is the
  fresh time plus the stale window, so Redis drops it when nobody may serve it.
- ``l:<cache>:<digest>`` -- the key's lease: ``<token>|<generation>`` while one
  process loads it, with an expiry (the single-flight lease).
- ``gen`` and ``gen:<cache>`` -- the namespace's and each cache's generation:
  a flush or a clear moves one on, which makes every older entry invisible at
  once (no SCAN, no DEL of thousands of keys).
- ``rl:<name>`` -- a rate limiter's next start slot and pause, in server
  microseconds.
- ``inv`` -- the pub/sub channel of invalidations.

The digest is BLAKE2b-128 of the key's canonical encoding
(:func:`seerrperf._keys.encode_key`), never Python's ``hash()``: every process
on every host computes the same digest for the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from seerrperf._keys import encode_key

__all__ = ["DIGEST_HEX", "Keyspace", "Message", "Op", "digest", "parse_message"]

DIGEST_HEX: Final = 32
"""Hex characters of a key digest (128 bits)."""

Op: TypeAlias = Literal["keys", "clear", "flush", "wake"]
"""What a message says: these keys changed; this cache was cleared; the whole
namespace was flushed; a lease was given up (wake its waiters, nothing changed)."""

_OPS: Final = frozenset({"keys", "clear", "flush", "wake"})


def digest(key: object) -> str:
    """Return the hex digest of ``key``'s canonical encoding.

    Raises:
        ConfigurationError: ``key`` is not a str, int, bytes, bool, None or a
            tuple of those.
    """
    data = encode_key(key, "a shared cache key")
    return hashlib.blake2b(data, digest_size=DIGEST_HEX // 2).hexdigest()


class Keyspace:
    """The Redis names of one namespace."""

    __slots__ = ("channel", "namespace", "namespace_generation", "prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.prefix = f"{namespace}:v1:"
        self.channel = self.prefix + "inv"
        self.namespace_generation = self.prefix + "gen"

    def generation(self, cache: str) -> str:
        """The name of ``cache``'s generation counter."""
        return f"{self.prefix}gen:{cache}"

    def entry(self, cache: str, key_digest: str) -> str:
        """The name of an entry."""
        return f"{self.prefix}e:{cache}:{key_digest}"

    def lease(self, cache: str, key_digest: str) -> str:
        """The name of an entry's lease."""
        return f"{self.prefix}l:{cache}:{key_digest}"

    def entry_keys(self, cache: str, key_digest: str) -> list[str]:
        """``KEYS`` of the scripts on one entry: entry, lease, both generations."""
        return [
            self.entry(cache, key_digest),
            self.lease(cache, key_digest),
            self.namespace_generation,
            self.generation(cache),
        ]

    def limiter(self, name: str) -> str:
        """The name of a rate limiter's state."""
        return f"{self.prefix}rl:{name}"


@dataclass(frozen=True, slots=True)
class Message:
    """One invalidation message, as published on the channel.

    Attributes:
        source: The publishing process's random id (its own messages are not
            invalidations for it: it changed its own tier already).
        op: What happened.
        cache: The cache's name (``None`` for a flush).
        digests: The digests of the keys concerned (``keys`` and ``wake``).
    """

    source: str
    op: Op
    cache: str | None
    digests: tuple[str, ...] = ()

    def encode(self) -> str:
        """Return the message as compact JSON."""
        body: dict[str, Any] = {"v": 1, "s": self.source, "o": self.op}
        if self.cache is not None:
            body["c"] = self.cache
        if self.digests:
            body["k"] = list(self.digests)
        return json.dumps(body, separators=(",", ":"))


def parse_message(data: object) -> Message | None:
    """Read a message from the channel; ``None`` when it is not one we understand.

    Lenient: the payload came from a peer, so nothing here raises.
    """
    try:
        body = json.loads(data)  # type: ignore[arg-type]  # bytes or str from redis-py
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("v") != 1:
        return None
    source, op, cache = body.get("s"), body.get("o"), body.get("c")
    digests = body.get("k", [])
    if not isinstance(source, str) or op not in _OPS:
        return None
    if cache is not None and not isinstance(cache, str):
        return None
    if op != "flush" and cache is None:
        return None
    if not isinstance(digests, list) or not all(
        isinstance(d, str) and len(d) == DIGEST_HEX for d in digests
    ):
        return None
    return Message(source, op, cache, tuple(digests))
