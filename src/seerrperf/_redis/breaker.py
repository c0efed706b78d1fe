"""When to talk to Redis: a circuit breaker on the injected clock, and how errors are classed.

No I/O. Closed, every call goes to Redis. The first failure that means
"Redis is down or too slow" (a connection error, a timeout, a read-only
replica) opens it: calls fall back at once, without waiting for a timeout.
Once ``retry_interval`` has passed, one call is let through as a probe; its
success closes the breaker, its failure keeps it open for another interval.
A call that never reports back cannot wedge it: the next probe comes an
interval later anyway.
"""

from __future__ import annotations

import threading
from typing import Literal, TypeAlias

from seerrperf._runtime import Clock

__all__ = ["Admission", "Breaker", "ErrorKind", "classify"]

Admission: TypeAlias = Literal["go", "probe", "skip"]
ErrorKind: TypeAlias = Literal["down", "refused"]


def classify(error: BaseException) -> ErrorKind:
    """``"down"`` when Redis is unreachable or too slow, else ``"refused"``.

    ``refused`` covers a server that answers but refuses this command (out
    of memory, ``MISCONF``, a script error): other commands may still work,
    so the breaker stays closed.
    """
    import redis.exceptions  # only reached once a call to Redis failed

    if isinstance(
        error,
        redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError | TimeoutError,
    ):
        return "down"
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return "down"  # a failover left us on a replica: nothing can be written
    return "refused"


class Breaker:
    """Closed or open; thread-safe.

    Args:
        retry_interval: Seconds between probes while open.
        clock: Monotonic clock in seconds.
    """

    __slots__ = ("_clock", "_lock", "_open", "_opened_at", "_retry_at", "retry_interval")

    def __init__(self, retry_interval: float, clock: Clock) -> None:
        self.retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._retry_at = 0.0
        self._opened_at = 0.0

    @property
    def closed(self) -> bool:
        """Whether calls go to Redis."""
        return not self._open

    def admit(self) -> Admission:
        """Decide one call: ``go`` (closed), ``probe`` (open, a probe is due) or ``skip``."""
        if not self._open:
            return "go"
        return self._admit_while_open()

    def _admit_while_open(self) -> Admission:
        with self._lock:
            if not self._open:  # closed meanwhile
                return "go"
            now = self._clock()
            if now < self._retry_at:
                return "skip"
            self._retry_at = now + self.retry_interval  # one probe per interval
            return "probe"

    def failed(self) -> bool:
        """Record that Redis is down; return whether this opened the breaker."""
        with self._lock:
            now = self._clock()
            self._retry_at = now + self.retry_interval
            if self._open:
                return False
            self._open = True
            self._opened_at = now
            return True

    def succeeded(self, admission: Admission) -> float | None:
        """Record a call that worked; return the outage's length if this closed the breaker.

        Only a probe closes it: a call admitted before the breaker opened
        says nothing about Redis now.
        """
        if admission != "probe":
            return None
        with self._lock:
            if not self._open:
                return None
            self._open = False
            return self._clock() - self._opened_at

    def reset(self) -> None:
        """Close it and forget the past (a forked child starts afresh)."""
        self._lock = threading.Lock()
        self._open = False
        self._retry_at = 0.0
