"""``RedisRateLimiter``: one start-rate budget for every process and host, on the server's clock.

The same face as the TMDB transport's per-client ``Throttle`` -- it decides,
the caller sleeps -- so it can take its place:

- :meth:`RedisRateLimiter.reserve` claims the fleet's next start slot in one
  atomic script (one round trip per upstream call) and returns how long to
  wait for it; a shared pause (a 429's ``Retry-After``) is part of that wait.
  Callers wait rather than fail.
- :meth:`RedisRateLimiter.pause` stores "paused until" for the whole fleet:
  every process's next reservation waits it out.
- :meth:`RedisRateLimiter.pause_left` answers from what this process knows
  (its own pauses and the last reservation's news), without a round trip.

While Redis is unavailable each process falls back to a local spacer at
``max_rps / expected_workers`` and its own pause, and rejoins the fleet's
budget as soon as Redis answers.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from seerrperf import _validate
from seerrperf._runtime import StartSpacer

from .backend import FALLBACK, Call
from .scripts import RESERVE

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ["RedisRateLimiter"]


class RedisRateLimiter:
    """A fleet-wide start-rate limit (from :meth:`RedisBackend.rate_limiter`).

    Starts are spaced ``(1 + margin) / max_rps`` seconds apart across every
    process that shares ``name``, decided by the Redis server's clock. Safe to
    share between threads; the async twins serve event loops.

    Args:
        backend: The process's backend.
        name: The limit's name.
        max_rps: Starts per second at most, fleet-wide.
        expected_workers: Processes sharing it (for the local fallback limit).
        margin: Seconds of slack per one-second window (see
            :meth:`RedisBackend.rate_limiter`).

    Raises:
        ConfigurationError: an argument is invalid.
    """

    __slots__ = (
        "_backend",
        "_interval_us",
        "_key",
        "_local",
        "_lock",
        "_paused_until",
        "local_rps",
        "max_rps",
        "name",
    )

    def __init__(
        self,
        backend: RedisBackend,
        name: str,
        *,
        max_rps: float,
        expected_workers: int,
        margin: float,
    ) -> None:
        self._backend = backend
        #: The limit's name.
        self.name: str = _validate.name("name", name, max_bytes=200)
        #: Starts per second at most, fleet-wide.
        self.max_rps: float = _validate.rate("max_rps", max_rps, maximum=1e6)
        workers = _validate.count("expected_workers", expected_workers, minimum=1, maximum=100_000)
        margin = _validate.duration("margin", margin, maximum=1.0)
        self._interval_us = max(1, round(1e6 * (1 + margin) / self.max_rps))
        #: Starts per second of this process alone while Redis is unavailable.
        self.local_rps: float = self.max_rps / workers
        self._local = StartSpacer(self.local_rps, backend.clock)
        self._key = backend._keyspace.limiter(self.name)
        self._lock = threading.Lock()
        self._paused_until = -math.inf

    def __repr__(self) -> str:
        return f"<RedisRateLimiter {self.name!r} max_rps={self.max_rps:g}>"

    def pause_left(self) -> float:
        """Seconds left of the pause this process knows of (0 when none); no round trip."""
        return max(0.0, self._paused_until - self._backend.clock())

    def pause(self, seconds: float) -> None:
        """Hold every process's requests for ``seconds`` from now (a longer pause wins).

        One round trip; while Redis is unavailable the pause holds this
        process only.

        Raises:
            ConfigurationError: ``seconds`` is not a finite number ``>= 0``.
        """
        self._backend._run(self._call(self._pause_us(seconds), take=False))

    async def apause(self, seconds: float) -> None:
        """The async twin of :meth:`pause`."""
        await self._backend._arun(self._call(self._pause_us(seconds), take=False))

    def reserve(self) -> float:
        """Claim the fleet's next start slot; return how many seconds to wait for it.

        One round trip. The wait includes any pause another process set.
        """
        return self._backend._run(self._call(0, take=True))

    async def areserve(self) -> float:
        """The async twin of :meth:`reserve`."""
        return await self._backend._arun(self._call(0, take=True))

    def _pause_us(self, seconds: float) -> int:
        seconds = _validate.duration("seconds", seconds, maximum=86_400)
        with self._lock:
            self._paused_until = max(self._paused_until, self._backend.clock() + seconds)
        return round(seconds * 1e6)

    def _call(self, pause_us: int, *, take: bool) -> Call[float]:
        return Call(
            RESERVE,
            [self._key],
            [self._interval_us, pause_us, "1" if take else "0"],
            lambda reply: self._read(reply, take),
        )

    def _read(self, reply: Any, take: bool) -> float:
        backend = self._backend
        if reply is FALLBACK:
            if not take:
                return 0.0
            with self._lock:
                wait = self._local.reserve()
        else:
            wait = int(reply[0]) / 1e6
            paused = int(reply[1]) / 1e6
            if paused > 0:
                with self._lock:
                    self._paused_until = max(self._paused_until, backend.clock() + paused)
        if take and wait > 0:
            backend._count("limiter_waits")
            backend._count("limiter_wait_seconds", wait)
        return wait
