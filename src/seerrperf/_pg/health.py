"""Database health checks that really ask the database, within a deadline.

``check_database_health`` / ``async_check_database_health`` never raise for a
database problem: they return a :class:`HealthResult`. The deadline holds even
when the server accepts a connection and then never answers: a watchdog shuts
the connection's socket down when time is up, which fails the query at once
(the pool then discards that connection). Cancelling the query instead would
make psycopg wait up to ten seconds for the server to acknowledge.

The ``clock=`` of a check (``time.monotonic`` by default) decides when the
check started, its ``latency_ms``, and how much of ``timeout`` is left for the
checkout, for the liveness check a seerrperf pool runs inside it, and for the
query. The waits themselves run in real time: psycopg_pool's checkout wait and
the watchdog's timer thread count the remainder the clock gave them.

``health_report`` turns results into an ``application/health+json`` response
(draft-inadarei-api-health-check). It is always valid JSON: a latency that
is not a finite number (a broken clock) is reported as ``null``, never as
``NaN``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, SeerrperfError
from seerrperf._redact import dsn_secrets, redact
from seerrperf._runtime import Clock

from .pool import AsyncTunedConnectionPool, TunedConnectionPool
from .watchdog import Watchdog, deadline_scope

__all__ = [
    "HealthReport",
    "HealthResult",
    "async_check_database_health",
    "check_database_health",
    "health_report",
]

logger = logging.getLogger("seerrperf.health")

HEALTH_CONTENT_TYPE = "application/health+json"
_QUERY = "SELECT 1"
_MAX_ERROR_LENGTH = 200
_MAX_OWN_ERROR_LENGTH = 600  # seerrperf's own errors name the cause and the fix: keep them whole
_ASYNC_TWIN = "an AsyncConnectionPool needs async_check_database_health"
_SYNC_TWIN = "a ConnectionPool needs check_database_health"


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The outcome of one database health check.

    Attributes:
        healthy: ``True`` when the database answered within the deadline.
        status: ``"pass"`` or ``"fail"`` (the health+json vocabulary).
        latency_ms: Time from the start of the check to its outcome.
        error: A short, password-free reason when unhealthy.
        pool: ``psycopg_pool`` statistics taken after the check (true figures
            for seerrperf's pools: see :class:`~seerrperf.PoolStats`).
        component: Name used for the report's check key (``"postgres"``).
        checked_at: When the check ran (UTC).
        critical: Whether the service fails without this component. A
            non-critical component that is down (Redis beneath the caches)
            makes :func:`health_report` answer ``warn`` with HTTP 200.
        statement_timeout_ms: The ``statement_timeout`` the server applies to
            the pool's statements (``0`` = none), when the pool knows it
            (seerrperf's pools do); ``None`` otherwise.
        warning: A concern that does not make the check fail, e.g. a server
            that does not enforce the pool's timeouts behind PgBouncer.
    """

    healthy: bool
    status: Literal["pass", "fail"]
    latency_ms: float
    error: str | None = None
    pool: Mapping[str, int] = field(default_factory=dict)
    component: str = "postgres"
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    critical: bool = True
    statement_timeout_ms: int | None = None
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (a latency that is not finite is ``None``)."""
        return {
            "healthy": self.healthy,
            "status": self.status,
            "latency_ms": _finite_ms(self.latency_ms),
            "error": self.error,
            "pool": dict(self.pool),
            "component": self.component,
            "checked_at": self.checked_at.isoformat(),
            "critical": self.critical,
            "statement_timeout_ms": self.statement_timeout_ms,
            "warning": self.warning,
        }


def _finite_ms(value: float) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return round(number, 3) if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """An ``application/health+json`` HTTP response, framework-neutral.

    Attributes:
        status_code: 200 when every check passes, else 503.
        headers: ``Content-Type`` and ``Cache-Control: no-store``.
        body: The health+json document as a dict.
    """

    status_code: int
    headers: Mapping[str, str]
    body: Mapping[str, Any]

    def json(self) -> str:
        """Return the body serialised as compact JSON (never ``NaN`` or ``Infinity``)."""
        return json.dumps(self.body, separators=(",", ":"), sort_keys=True, allow_nan=False)


class _Check:
    """Shared, I/O-free bookkeeping for one check: arguments, deadline, result, errors."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any],
        kind: type[ConnectionPool[Any]] | type[AsyncConnectionPool[Any]],
        twin: str,
        timeout: float,
        clock: Clock,
    ) -> None:
        # A pool of the other kind is a programming error: raise, do not report an outage.
        what = f"a psycopg_pool.{kind.__name__} ({twin})"
        self.pool = _validate.instance("pool", pool, kind, what)
        self.timeout = _validate.duration("timeout", timeout, allow_zero=False)
        self.clock = _validate.function("clock", clock, "a clock like time.monotonic")
        self.start = clock()
        if not isinstance(self.start, int | float) or not math.isfinite(self.start):
            raise ConfigurationError(
                f"clock must return a finite number of seconds, got {_validate.shown(self.start)}"
            )
        self.deadline = self.start + self.timeout
        self.secrets = dsn_secrets(pool.conninfo) if isinstance(pool.conninfo, str) else ()

    def remaining(self) -> float:
        return max(0.001, self.deadline - self.clock())

    def result(self, error: BaseException | None, *, timed_out: bool = False) -> HealthResult:
        latency = (self.clock() - self.start) * 1000.0
        message: str | None = None
        if timed_out:
            message = f"no answer from the database within {self.timeout:g} s"
        elif error is not None:
            message = self._describe(error)
        stats = self.pool.get_stats()
        if message is not None:
            logger.warning("database health check failed: %s", message)
        statement_ms, warning = _server_timeouts(self.pool)
        return HealthResult(
            healthy=message is None,
            status="pass" if message is None else "fail",
            latency_ms=latency,
            error=message,
            pool=stats,
            statement_timeout_ms=statement_ms,
            warning=warning,
        )

    def _describe(self, error: BaseException) -> str:
        text = " ".join(str(error).split()) or "no details"
        text = redact(f"{type(error).__name__}: {text}", self.secrets)
        own = isinstance(error, SeerrperfError)
        return text[: _MAX_OWN_ERROR_LENGTH if own else _MAX_ERROR_LENGTH]


def _server_timeouts(pool: object) -> tuple[int | None, str | None]:
    """What a seerrperf pool knows the server enforces, and a warning when it falls short."""
    if not isinstance(pool, TunedConnectionPool | AsyncTunedConnectionPool):
        return None, None
    stats = pool.stats()
    if stats.server_timeouts_enforced is not False:
        return stats.statement_timeout_ms, None
    return stats.statement_timeout_ms, (
        "the server does not enforce the pool's timeouts (statement_timeout "
        f"{stats.statement_timeout_ms} ms, idle_in_transaction_session_timeout "
        f"{stats.idle_in_transaction_timeout_ms} ms; 0 = off): set them on the role "
        "(ALTER ROLE ... SET statement_timeout) or in PgBouncer's connect_query"
    )


def check_database_health(
    pool: ConnectionPool[Any], *, timeout: float = 2.0, clock: Clock = time.monotonic
) -> HealthResult:
    """Run ``SELECT 1`` through ``pool`` and report the outcome.

    Args:
        pool: An open ``psycopg_pool.ConnectionPool``.
        timeout: Seconds for checkout plus query together.
        clock: Measures the latency and what is left of ``timeout`` at each
            step (the waits themselves run in real time).

    Returns:
        A :class:`HealthResult`; it is never an exception for database
        problems, and it arrives within ``timeout`` plus a small margin (for
        pools made by seerrperf's factories that includes their liveness check
        on checkout).

    Raises:
        ConfigurationError: ``pool`` is not a ``ConnectionPool`` (an
            ``AsyncConnectionPool`` needs :func:`async_check_database_health`),
            ``timeout`` is not a finite positive number, or ``clock`` is not
            callable.
    """
    check = _Check(pool, ConnectionPool, _ASYNC_TWIN, timeout, clock)
    try:
        with (
            deadline_scope(check.deadline, check.clock),
            pool.connection(timeout=check.remaining()) as conn,
        ):
            error: psycopg.Error | None = None
            with Watchdog(conn, check.remaining()) as dog:
                try:
                    conn.execute(_QUERY).fetchone()
                except psycopg.Error as exc:
                    error = exc
    except Exception as exc:  # health checks report, they do not raise
        return check.result(exc)
    return check.result(None if dog.fired else error, timed_out=dog.fired)


async def async_check_database_health(
    pool: AsyncConnectionPool[Any], *, timeout: float = 2.0, clock: Clock = time.monotonic
) -> HealthResult:
    """Run ``SELECT 1`` through an async ``pool`` and report the outcome.

    The async twin of :func:`check_database_health`, with the same arguments
    and guarantees. Cancelling it leaves nothing running.

    Raises:
        ConfigurationError: ``pool`` is not an ``AsyncConnectionPool`` (a
            ``ConnectionPool`` needs :func:`check_database_health`), or as
            :func:`check_database_health`.
    """
    check = _Check(pool, AsyncConnectionPool, _SYNC_TWIN, timeout, clock)
    try:
        with deadline_scope(check.deadline, check.clock):
            async with pool.connection(timeout=check.remaining()) as conn:
                error: psycopg.Error | None = None
                with Watchdog(conn, check.remaining(), on_loop=True) as dog:
                    try:
                        await (await conn.execute(_QUERY)).fetchone()
                    except psycopg.Error as exc:
                        error = exc
    except Exception as exc:  # health checks report, they do not raise
        return check.result(exc)
    return check.result(None if dog.fired else error, timed_out=dog.fired)


def health_report(*results: HealthResult, version: str | None = None) -> HealthReport:
    """Build an ``application/health+json`` response from health results.

    Args:
        *results: One or more :class:`HealthResult`.
        version: Optional service version for the report's ``version`` field.

    Returns:
        A :class:`HealthReport`: ``pass`` with 200 when all results pass (and
        at least one was given); ``warn`` with 200 when only non-critical
        components (``critical=False``, e.g. Redis) fail, whose checks then
        say ``warn``, or when a passing result carries a warning (a server
        that does not enforce the pool's timeouts); ``fail`` with 503
        otherwise. Never cacheable.
    """
    checks: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        when = result.checked_at.isoformat().replace("+00:00", "Z")
        status = result.status if result.healthy or result.critical else "warn"
        entry: dict[str, Any] = {
            "componentType": "datastore",
            "observedValue": _finite_ms(result.latency_ms),
            "observedUnit": "ms",
            "status": status,
            "time": when,
        }
        if result.error:
            entry["output"] = result.error
        checks.setdefault(f"{result.component}:responseTime", []).append(entry)
        if result.statement_timeout_ms is not None or result.warning:
            timeout_entry: dict[str, Any] = {
                "componentType": "datastore",
                "observedValue": result.statement_timeout_ms,
                "observedUnit": "ms",
                "status": "warn" if result.warning else "pass",
                "time": when,
            }
            if result.warning:
                timeout_entry["output"] = result.warning
            checks.setdefault(f"{result.component}:statementTimeout", []).append(timeout_entry)
        if result.pool:
            checks.setdefault(f"{result.component}:connections", []).append(
                {
                    "componentType": "datastore",
                    "observedValue": int(result.pool.get("pool_size", 0)),
                    "observedUnit": "connections",
                    "status": status,
                    "time": when,
                }
            )
    passing = bool(results) and all(r.healthy for r in results if r.critical)
    degraded = passing and (not all(r.healthy for r in results) or any(r.warning for r in results))
    overall = "warn" if degraded else "pass" if passing else "fail"
    body: dict[str, Any] = {"status": overall, "checks": checks}
    if version is not None:
        body["version"] = version
    if not results:
        body["output"] = "no health checks were run"
    return HealthReport(
        status_code=200 if passing else 503,
        headers={"Content-Type": HEALTH_CONTENT_TYPE, "Cache-Control": "no-store"},
        body=body,
    )
