"""Redis health checks: a real ``PING``, reported as a non-critical component.

A shared tier is an optimisation, not a dependency: when only Redis is down
the service still answers (from its own tiers), so ``health_report`` turns a
failed Redis check into ``warn`` with HTTP 200, not ``fail`` with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio.to_thread

from seerrperf import _validate
from seerrperf._pg.health import HealthResult
from seerrperf._runtime import Clock, current_loop

from .backend import RedisBackend

__all__ = ["async_check_redis_health", "check_redis_health"]

logger = logging.getLogger("seerrperf.health")


def _result(
    backend: RedisBackend, start: float, clock: Clock, error: BaseException | None
) -> HealthResult:
    message = None
    if error is not None:
        message = backend._describe(error)
        if backend.available:
            logger.warning("Redis health check failed: %s", message)
    elif not backend.available:
        message = "Redis answers, but this process still falls back (its next probe rejoins)"
    return HealthResult(
        healthy=error is None,
        status="pass" if error is None else "fail",
        latency_ms=(clock() - start) * 1000.0,
        error=message,
        component="redis",
        critical=False,
    )


def _check(backend: object, clock: Clock) -> tuple[RedisBackend, Clock]:
    checked = _validate.instance("backend", backend, RedisBackend, "a RedisBackend")
    return checked, _validate.function("clock", clock, "a clock like time.monotonic")


def check_redis_health(backend: RedisBackend, *, clock: Clock = time.monotonic) -> HealthResult:
    """Send ``PING`` through ``backend`` and report the outcome.

    The ``PING`` bypasses the circuit breaker (it tells whether Redis answers
    now) and is bounded by the backend's ``timeout``.

    Args:
        backend: The process's :class:`RedisBackend`.
        clock: Measures the latency.

    Returns:
        A :class:`HealthResult` with ``component="redis"`` and
        ``critical=False``: in :func:`health_report` a failure makes the
        report ``warn`` (HTTP 200), not ``fail``. Never raises for a Redis
        problem.

    Raises:
        ConfigurationError: ``backend`` is not a :class:`RedisBackend` or
            ``clock`` is not callable.
    """
    backend, clock = _check(backend, clock)
    start = clock()
    try:
        backend._ping()
    except Exception as exc:  # health checks report, they do not raise
        return _result(backend, start, clock, exc)
    return _result(backend, start, clock, None)


async def async_check_redis_health(
    backend: RedisBackend, *, clock: Clock = time.monotonic
) -> HealthResult:
    """The async twin of :func:`check_redis_health` (asyncio natively, trio in a thread)."""
    backend, clock = _check(backend, clock)
    start = clock()
    try:
        loop = current_loop()
        if isinstance(loop, asyncio.AbstractEventLoop):
            await backend._aping(loop)
        else:
            await anyio.to_thread.run_sync(backend._ping)
    except Exception as exc:
        return _result(backend, start, clock, exc)
    return _result(backend, start, clock, None)
