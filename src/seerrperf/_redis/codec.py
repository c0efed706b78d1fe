"""How values cross processes: JSON by default, pickle only when the application asks for it.

A value goes to the shared tier only if it comes back the same: the JSON
serializer refuses what JSON would silently change (a tuple read back as a
list, an ``int`` dict key read back as a ``str``, NaN), so a process never
reads a value other than the one another process stored. A refused value
stays in the process that made it (the tier reports ``"local_only"``).

Pickle round-trips almost anything, but reading a pickle runs code chosen by
whoever wrote it: with ``serializer="pickle"`` anyone who can write to the
Redis keyspace can run code in every worker. Use it only when Redis is
reachable by your application alone.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

from seerrperf import _validate
from seerrperf._errors import ConfigurationError

__all__ = ["JsonSerializer", "PickleSerializer", "Serializer", "serializer_argument"]


@runtime_checkable
class Serializer(Protocol):
    """What the shared tier needs to move values between processes.

    ``name`` is stored with every entry: a process reading an entry written
    with another serializer treats it as missing instead of misreading it (a
    rolling deploy that changes serializers stays correct). ``dumps`` raises
    any exception for a value it cannot represent faithfully; ``loads`` raises
    for bytes it cannot read (both are then treated as "not shared").
    """

    @property
    def name(self) -> str:
        """A short, stable name of the format, stored with each entry."""
        ...

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as bytes, or raise if it cannot come back the same."""
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value ``data`` holds."""
        ...


class JsonSerializer:
    """JSON (UTF-8), refusing values that would not come back equal.

    Accepts what JSON represents exactly: ``dict`` with ``str`` keys,
    ``list``, ``str``, ``int``, finite ``float``, ``bool`` and ``None``,
    nested. Refuses tuples, sets, non-``str`` keys, NaN and infinities, and
    objects JSON does not know (``datetime``, ``Decimal``...).
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """``"json"``."""
        return "json"

    def __repr__(self) -> str:
        return "JsonSerializer()"

    def dumps(self, value: Any) -> bytes:
        """Return the compact JSON of ``value``.

        Raises:
            TypeError: JSON cannot represent ``value``.
            ValueError: ``value`` holds NaN or an infinity, or would come back
                different (a tuple, a non-``str`` dict key).
        """
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # JSON turns tuples into lists and int keys into strings without a word:
        # refuse what would not come back equal (equality is exact for these types).
        if json.loads(text) != value:
            raise ValueError("the value would not come back the same through JSON")
        return text.encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """Return the value of the JSON document ``data``."""
        return json.loads(data)


class PickleSerializer:
    """Pickle (protocol 5): any picklable value, for a Redis only your application can write.

    Reading a pickle can run arbitrary code: whoever can write to the Redis
    keyspace can run code in every process that reads from it. Opt in only
    when Redis is private to the application (its own instance, a password,
    no shared tenants).
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """``"pickle"``."""
        return "pickle"

    def __repr__(self) -> str:
        return "PickleSerializer()"

    def dumps(self, value: Any) -> bytes:
        """Return the pickle of ``value``."""
        return pickle.dumps(value, protocol=5)

    def loads(self, data: bytes) -> Any:
        """Return the value pickled in ``data`` (runs code the pickle names)."""
        return pickle.loads(data)  # noqa: S301 - opted into by the application, see the class docstring


def serializer_argument(value: object) -> Serializer:
    """Return the serializer ``value`` names: ``"json"``, ``"pickle"`` or a :class:`Serializer`.

    Raises:
        ConfigurationError: anything else.
    """
    if value == "json":
        return JsonSerializer()
    if value == "pickle":
        return PickleSerializer()
    if isinstance(value, str) or not isinstance(value, Serializer):
        raise ConfigurationError(
            'serializer must be "json", "pickle" or an object with name, dumps() and loads(), '
            f"got {_validate.shown(value)}"
        )
    _validate.name("serializer.name", value.name, max_bytes=64)
    return value
