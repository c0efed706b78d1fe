"""Request body limits: refuse early on ``Content-Length``, count what arrives otherwise.

A body from a peer always has a size limit. When the request declares its
length and that is over the limit, the answer is 413 at once, before a byte
of the body is read; when it does not (chunked transfer) or lies, the bytes
are counted as they arrive and reading stops at the first byte over the
limit. Pure: the integrations do the reading and the answering.
"""

from __future__ import annotations

from seerrperf import _validate

__all__ = ["BodyCounter", "declared_length"]

MAX_BODY_LIMIT = 2**53
"""The largest limit one may set (9 PB): every declared length above it is too large."""
_MAX_DIGITS = 18
_HUGE = 2**63


def declared_length(value: str | bytes | None) -> int | None:
    """Read a ``Content-Length`` value leniently, as a peer sent it.

    Args:
        value: The header's value, or ``None`` when there is none.

    Returns:
        The declared number of bytes; ``None`` when there is no header or it
        is not one non-negative decimal number (RFC 9110 8.6 also allows a
        list of identical values, ``"42, 42"``). Never raises: a server in
        front has usually refused a malformed length already, and a length
        we cannot read is simply not trusted -- the bytes are counted instead.
        A length of more than 18 digits reads as ``2**63``, more than any
        limit (``int()`` would refuse one of more than 4300 digits).
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    members = {member.strip(" \t") for member in text.split(",")}
    if len(members) != 1:
        return None
    (member,) = members
    if not member.isascii() or not member.isdigit():
        return None
    digits = member.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


class BodyCounter:
    """Counts a body's bytes as they arrive and says when they pass the limit.

    Args:
        limit: The largest body accepted, in bytes.

    Raises:
        ConfigurationError: ``limit`` is not an integer in ``0..2**53``.
    """

    __slots__ = ("limit", "received")

    def __init__(self, limit: int) -> None:
        self.limit = _validate.count("max_body_size", limit, maximum=MAX_BODY_LIMIT)
        self.received = 0

    def too_large(self, declared: int | None) -> bool:
        """Whether a declared length alone is over the limit (answer 413 unread)."""
        return declared is not None and declared > self.limit

    def add(self, size: int) -> bool:
        """Count ``size`` more bytes; return whether the body is now over the limit."""
        self.received += size
        return self.received > self.limit
