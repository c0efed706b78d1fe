"""The only argument rules: every public argument is checked here, one function per kind.

Each function returns the value in its canonical type or raises
:class:`~seerrperf.ConfigurationError` whose message names the argument and
the rule, in one style: ``"<name> must be <rule>, got <what>"``. The offending
value is shown shortened (a huge integer or a long string does not flood a
log) and never for secrets. Input that came from a peer (a response header, a
body) is not an argument and is never checked here.

One decision per kind:

- **Durations** (:func:`duration`): seconds as ``int`` or ``float`` (never
  ``bool``), finite, ``>= 0`` (or ``> 0`` where zero means nothing), and at
  most :data:`MAX_SECONDS` (ten years): beyond that a value is a mistake, and
  arithmetic on clocks or ``float()`` of a huge integer would overflow.
  ``None`` means "no limit" only where the argument documents it
  (``allow_none=True``); infinity is never accepted, for any duration.
- **Whole seconds** (:func:`whole_seconds`): an ``int`` where the protocol
  counts whole seconds -- HTTP ``max-age`` and friends (RFC 9111
  delta-seconds), libpq's ``connect_timeout`` -- so a fraction is refused
  rather than silently truncated.
- **Counts and sizes** (:func:`count`): an ``int`` (never ``bool``) within
  ``[minimum, maximum]``.
- **Rates** (:func:`rate`): a finite number ``> 0`` per second.
- **Probabilities** (:func:`probability`): a finite number in ``[0, 1]``.
- **Ratios** (:func:`ratio`): a finite number in ``[0, maximum]``, a multiple
  of another quantity (a stale window as a fraction of its TTL).
- **Booleans** (:func:`flag`): exactly ``True`` or ``False``; ``1`` or
  ``"yes"`` is refused, so a misplaced positional argument is caught.
- **Secrets** (:func:`secret`): a non-empty ``str`` of printable ASCII with no
  whitespace (what an HTTP header or a query string can carry unchanged); the
  message never echoes the value.
- **Choices** (:func:`choice`): one of a fixed set of strings; the message
  lists them.
- **Names** (:func:`name`): a non-empty printable ``str``.
- **Instances** (:func:`instance`): an object of the expected class; the
  message says which class was given.
- **Functions** (:func:`function`): a callable (a ``clock=``, a callback, a
  loader, a key builder), checked when it is given, not when it is first
  called, which may be in a worker thread where the error would only be
  logged; what it returns is checked where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal, TypeVar, overload

from ._errors import ConfigurationError

__all__ = [
    "MAX_SECONDS",
    "choice",
    "count",
    "duration",
    "flag",
    "function",
    "instance",
    "name",
    "probability",
    "rate",
    "ratio",
    "secret",
    "shown",
    "whole_seconds",
]

MAX_SECONDS = 10 * 365 * 86_400
"""The longest duration any argument accepts: ten years, in seconds."""

_T = TypeVar("_T")


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@overload
def duration(
    arg: str,
    value: object,
    *,
    allow_zero: bool = ...,
    allow_none: Literal[False] = ...,
    maximum: float = ...,
) -> float: ...
@overload
def duration(
    arg: str,
    value: object,
    *,
    allow_zero: bool = ...,
    allow_none: Literal[True],
    maximum: float = ...,
) -> float | None: ...
def duration(
    arg: str,
    value: object,
    *,
    allow_zero: bool = True,
    allow_none: bool = False,
    maximum: float = MAX_SECONDS,
) -> float | None:
    """Return ``value`` as seconds (``float``), or ``None`` when that is allowed.

    Args:
        arg: The argument's name, for the message.
        value: What the caller passed.
        allow_zero: Whether ``0`` is meaningful (for example "do not wait").
        allow_none: Whether ``None`` ("no limit") is accepted.
        maximum: The largest value accepted.

    Raises:
        ConfigurationError: the value breaks the rule.
    """
    if value is None and allow_none:
        return None
    if not _is_number(value):
        extra = " or None" if allow_none else ""
        raise ConfigurationError(
            f"{arg} must be a number of seconds{extra}, got {type(value).__name__}"
        )
    assert isinstance(value, int | float)
    too_big = value > maximum if isinstance(value, int) else False  # before float(): no overflow
    seconds = math.inf if too_big else float(value)
    if math.isfinite(seconds) and seconds > maximum:
        too_big = True
    if too_big:
        raise ConfigurationError(f"{arg} must be at most {maximum:.0f} seconds, got {shown(value)}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        low = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{arg} must be finite and {low} seconds, got {shown(value)}")
    return seconds


def whole_seconds(arg: str, value: object, *, minimum: int = 0, maximum: int = MAX_SECONDS) -> int:
    """Return ``value`` if it is a whole number of seconds in ``[minimum, maximum]``.

    For protocols that count whole seconds (HTTP delta-seconds, libpq's
    ``connect_timeout``).

    Raises:
        ConfigurationError: the value is not an ``int`` or out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(
            f"{arg} must be a whole number of seconds (an int), got {type(value).__name__}"
        )
    if value < minimum:
        raise ConfigurationError(f"{arg} must be >= {minimum} seconds, got {shown(value)}")
    if value > maximum:
        raise ConfigurationError(f"{arg} must be at most {maximum} seconds, got {shown(value)}")
    return value


def count(arg: str, value: object, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) in ``[minimum, maximum]``.

    Raises:
        ConfigurationError: the value is not an ``int`` or out of range.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{arg} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{arg} must be >= {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{arg} must be <= {maximum}, got {shown(value)}")
    return value


def rate(arg: str, value: object, *, maximum: float = 1e9) -> float:
    """Return ``value`` as ``float`` if it is a finite number ``> 0`` (per second).

    Raises:
        ConfigurationError: the value is not a positive finite number.
    """
    rule = f"a finite number > 0 and <= {maximum:g}"
    if not _is_number(value):
        raise ConfigurationError(f"{arg} must be {rule}, got {type(value).__name__}")
    assert isinstance(value, int | float)
    if isinstance(value, int) and value > maximum:
        raise ConfigurationError(f"{arg} must be {rule}, got {shown(value)}")
    number = float(value)
    if not math.isfinite(number) or not 0 < number <= maximum:
        raise ConfigurationError(f"{arg} must be {rule}, got {shown(value)}")
    return number


def probability(arg: str, value: object) -> float:
    """Return ``value`` as ``float`` if it is a number in ``[0, 1]``.

    Raises:
        ConfigurationError: the value is not a number between 0 and 1.
    """
    return ratio(arg, value, maximum=1.0)


def ratio(arg: str, value: object, *, maximum: float) -> float:
    """Return ``value`` as ``float`` if it is a finite number in ``[0, maximum]``.

    Raises:
        ConfigurationError: the value is not a number in that range.
    """
    rule = f"a number between 0 and {maximum:g}"
    if not _is_number(value):
        raise ConfigurationError(f"{arg} must be {rule}, got {type(value).__name__}")
    assert isinstance(value, int | float)
    if isinstance(value, int) and value > maximum:  # before float(): no overflow
        raise ConfigurationError(f"{arg} must be {rule}, got {shown(value)}")
    number = float(value)
    if not 0.0 <= number <= maximum:  # NaN fails too
        raise ConfigurationError(f"{arg} must be {rule}, got {shown(value)}")
    return number


def flag(arg: str, value: object) -> bool:
    """Return ``value`` if it is exactly ``True`` or ``False``.

    Raises:
        ConfigurationError: anything else, truthy values included.
    """
    if not isinstance(value, bool):
        raise ConfigurationError(f"{arg} must be True or False, got {shown(value)}")
    return value


@overload
def secret(arg: str, value: object, *, allow_none: Literal[False] = ...) -> str: ...
@overload
def secret(arg: str, value: object, *, allow_none: Literal[True]) -> str | None: ...
def secret(arg: str, value: object, *, allow_none: bool = False) -> str | None:
    """Return ``value`` if it can be a credential: printable ASCII, no whitespace.

    The message never shows the value, nor a part of it.

    Raises:
        ConfigurationError: the value is not a usable credential.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{arg} must be a string, got {type(value).__name__}")
    if not value or not all("!" <= char <= "~" for char in value):
        raise ConfigurationError(
            f"{arg} must be non-empty printable ASCII without spaces "
            "(the value is not shown: it is a secret)"
        )
    return value


def choice(arg: str, value: object, allowed: Collection[str]) -> str:
    """Return ``value`` if it is one of ``allowed``.

    Raises:
        ConfigurationError: the value is not one of them; the message lists them.
    """
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(sorted(allowed))
        raise ConfigurationError(f"{arg} must be one of {options}; got {shown(value)}")
    return value


def name(arg: str, value: object, *, max_bytes: int | None = None) -> str:
    """Return ``value`` if it is a non-empty printable string (at most ``max_bytes``).

    Raises:
        ConfigurationError: the value is not such a string.
    """
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigurationError(f"{arg} must be a non-empty printable string, got {shown(value)}")
    if max_bytes is not None and len(value.encode()) > max_bytes:
        raise ConfigurationError(f"{arg} must be at most {max_bytes} bytes, got {shown(value)}")
    return value


def instance(arg: str, value: object, cls: type[_T] | tuple[type[Any], ...], what: str) -> _T:
    """Return ``value`` if it is an instance of ``cls``.

    Args:
        arg: The argument's name.
        value: What the caller passed.
        cls: The accepted class (or classes).
        what: How the message names the expected kind, e.g. ``"a NamedCache"``.

    Raises:
        ConfigurationError: ``value`` is of another type.
    """
    if not isinstance(value, cls):
        raise ConfigurationError(f"{arg} must be {what}, got {type(value).__name__}")
    return value


def function(arg: str, value: _T, what: str = "a callable") -> _T:
    """Return ``value`` if it is callable.

    Args:
        arg: The argument's name.
        value: What the caller passed.
        what: How the message names the expected kind, e.g.
            ``"a clock like time.monotonic"``.

    Raises:
        ConfigurationError: ``value`` cannot be called.
    """
    if not callable(value):
        raise ConfigurationError(f"{arg} must be {what}, got {type(value).__name__}")
    return value
