"""What the Redis backend counts, and the frozen snapshot ``stats()`` returns."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["Counters", "RedisStats"]


@dataclass(frozen=True, slots=True)
class RedisStats:
    """A snapshot of one process's :class:`~seerrperf.RedisBackend` counters.

    Attributes:
        namespace: The backend's namespace.
        available: Whether calls go to Redis now (the circuit breaker is
            closed); ``False`` while every call falls back.
        subscribed: Whether this process receives invalidations now.
        shared_hits: Lookups answered with a fresh shared entry.
        stale_hits: Lookups answered with a stale shared entry (inside the
            caller's stale-while-revalidate window).
        shared_misses: Lookups that found no usable shared entry.
        round_trips: Requests sent to Redis (a script call is one).
        errors: Requests that failed (refused, timed out, connection lost).
        fallbacks: Operations answered without Redis (it failed, or the
            breaker was open): the caller used its own tier, its own
            single-flight or its local rate limiter instead.
        loads: Loader runs started by ``get_or_load`` and ``refresh``.
        lease_waits: ``get_or_load`` calls that waited for another process's load.
        takeovers: Leases taken over from a holder whose lease expired
            without a result (it died, or lost Redis).
        leases_lost: Loads whose result was not stored because their lease was
            gone (a ``set``, ``delete``, ``clear`` or ``flush`` meanwhile, or
            an expiry).
        lease_timeouts: Waits for another process's load that gave up and
            loaded locally.
        invalidations_sent: Invalidation messages published.
        invalidations_received: Invalidation messages of other processes received.
        resyncs: Times this process told its listeners to drop their whole
            local tier (its subscription was lost or came back).
        limiter_waits: Rate-limiter reservations that had to wait.
        limiter_wait_seconds: Their total wait, in seconds.
        local_only: Values kept out of the shared tier: not serializable, or
            larger than ``max_value_bytes``.
    """

    namespace: str
    available: bool
    subscribed: bool
    shared_hits: int
    stale_hits: int
    shared_misses: int
    round_trips: int
    errors: int
    fallbacks: int
    loads: int
    lease_waits: int
    takeovers: int
    leases_lost: int
    lease_timeouts: int
    invalidations_sent: int
    invalidations_received: int
    resyncs: int
    limiter_waits: int
    limiter_wait_seconds: float
    local_only: int

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


_COUNTED = tuple(f.name for f in fields(RedisStats) if f.type in ("int", "float"))


class Counters:
    """The running counts behind :class:`RedisStats`; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(_COUNTED, 0)

    def add(self, name: str, amount: float = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        with self._lock:
            self._values[name] += amount

    def reset(self) -> None:
        """Start again from zero, with a new lock (a forked child)."""
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_COUNTED, 0)

    def snapshot(self) -> dict[str, float]:
        """Return a copy of every counter."""
        with self._lock:
            return dict(self._values)
