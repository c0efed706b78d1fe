"""Argument checks shared by every module: one rule for numbers everywhere.

Each raises :class:`~seerrperf.ConfigurationError` naming the argument.
"""

from __future__ import annotations

import math

from ._exceptions import ConfigurationError

__all__ = ["require_int", "require_positive", "require_seconds"]


def require_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """Return ``value`` as float if it is a finite number of seconds (> 0, or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be finite and {bound} seconds, got {value}")
    return float(value)


def require_positive(name: str, value: object) -> float:
    """Return ``value`` as float if it is a finite number > 0 (a rate, a count per second)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be finite and > 0, got {value}")
    return float(value)
