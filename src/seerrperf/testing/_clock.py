"""A clock that moves only when told to, for tests that must not sleep."""

from __future__ import annotations

import threading

from seerrperf import _validate

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock for tests: pass it as ``clock=`` and move it with :meth:`advance`.

    ::

        clock = FakeClock()
        cache = NamedCache("t", ttl=60, clock=clock)
        cache.set("k", 1)
        clock.advance(61)
        assert cache.get("k") is None

    Callable like ``time.monotonic``; safe to read and advance from several
    threads.

    Args:
        start: The time it shows first, in seconds.

    Raises:
        ConfigurationError: ``start`` is not a finite number of seconds >= 0.
    """

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float = 0.0) -> None:
        self._now = _validate.duration("start", start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """Return the current fake time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new time.

        Raises:
            ConfigurationError: ``seconds`` is negative or not a finite number
                (a monotonic clock never goes back).
        """
        step = _validate.duration("seconds", seconds)
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self._now:g}>"
