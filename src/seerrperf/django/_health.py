"""Readiness on Django's own database, within a deadline whatever Django's pool does."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from seerrperf import HealthResult, check_database_health, health_report, no_store_headers
from seerrperf._pg import PoolSettings, pool_factory
from seerrperf._pg.pool import _IdleTracker
from seerrperf._pg.watchdog import guard_check
from seerrperf._runtime import Clock
from seerrperf._web.process import PerProcess

from ._state import config

__all__ = ["check_health", "guard_pool", "live", "ready"]

logger = logging.getLogger("seerrperf.django")

HEALTH_CONTENT_TYPE: Final = "application/health+json"
_LIVE_BODY: Final = b'{"status":"pass"}'
CHECK_IDLE: Final = PoolSettings().check_idle
"""Seconds a pooled connection may idle before a checkout checks it (HikariCP's rule)."""
_GUARDED: Final = "_seerrperf_guarded"
# Connection parameters of Django's that are Python objects, not libpq's.
_NOT_LIBPQ: Final = frozenset({"cursor_factory", "context", "prepare_threshold", "autocommit"})
_health_pools: dict[str, PerProcess[ConnectionPool[Any]]] = {}
_health_pools_guard = threading.Lock()


def guard_pool(pool: ConnectionPool[Any], *, clock: Clock = time.monotonic) -> None:
    """Bound Django's pool's checkout check by any readiness deadline; check idle ones only.

    Django gives its pool ``check=ConnectionPool.check_connection`` when
    ``CONN_HEALTH_CHECKS`` is on: a round trip on every checkout that blocks
    for ever on a frozen server. This wraps whatever check the pool has
    (psycopg_pool keeps it in ``_check``): it runs only for connections idle
    for :data:`CHECK_IDLE` seconds or more, and under a readiness deadline
    (``deadline_scope``) a watchdog shuts the socket down when time is up.
    A pool without a check is left without one. Idempotent.

    Args:
        pool: Django's pool (``connections[alias].pool``), or any psycopg_pool one.
        clock: Measures how long a connection was idle (tests pass a FakeClock).
    """
    if getattr(pool, _GUARDED, False):
        return
    original: Callable[[Any], None] | None = getattr(pool, "_check", None)
    if original is not None:
        tracker = _IdleTracker(CHECK_IDLE, clock)

        def check(conn: Any) -> None:
            if tracker.due(conn):
                with guard_check(conn):
                    original(conn)

        pool._check = check
    setattr(pool, _GUARDED, True)


def _failed(reason: str, start: float) -> HealthResult:
    latency = (time.monotonic() - start) * 1000.0
    logger.warning("database health check failed: %s", reason)
    return HealthResult(healthy=False, status="fail", latency_ms=latency, error=reason)


def _health_pool(alias: str, params: dict[str, Any]) -> ConnectionPool[Any]:
    """A one-connection seerrperf pool per process for an alias without Django's pool."""
    with _health_pools_guard:
        holder = _health_pools.get(alias)
        if holder is None:
            libpq = {k: v for k, v in params.items() if k not in _NOT_LIBPQ and v is not None}

            def make() -> ConnectionPool[Any]:
                made = pool_factory(
                    make_conninfo("", **libpq),
                    min_size=0,
                    max_size=1,
                    name=f"seerrperf-health-{alias}",
                )
                made.open(wait=False)
                return made

            holder = _health_pools[alias] = PerProcess(make)
    return holder()


def check_health(using: str | None = None, *, timeout: float | None = None) -> HealthResult:
    """Ask Django's database ``using`` whether it answers, within ``timeout``.

    With Django's pool (``OPTIONS["pool"]``) the check runs on that pool,
    opened first if no query has opened it yet (no ``PoolClosed``), its
    checkout check bounded by the deadline (:func:`guard_pool`). Without it,
    the check runs on a one-connection seerrperf pool of this process with
    the alias's parameters, so a frozen server cannot hold a Django
    connection. Never raises for a database problem; a database that is not
    PostgreSQL, or a pool that is not a ``psycopg_pool.ConnectionPool``,
    fails with the reason.

    Args:
        using: The alias; ``SEERRPERF["DATABASE"]`` by default.
        timeout: Seconds in all; ``SEERRPERF["HEALTH_TIMEOUT"]`` by default.
    """
    checked = config()
    alias = checked.database if using is None else using
    seconds = checked.integration.health_timeout if timeout is None else timeout
    start = time.monotonic()
    try:
        wrapper = connections[alias]
    except Exception as exc:  # ConnectionDoesNotExist, ImproperlyConfigured
        return _failed(f"DATABASES has no usable {alias!r}: {type(exc).__name__}", start)
    if wrapper.vendor != "postgresql":
        return _failed(
            f"DATABASES[{alias!r}] uses the {wrapper.vendor} backend: seerrperf's readiness "
            "needs django.db.backends.postgresql",
            start,
        )
    try:
        pool = wrapper.pool
        if pool is None:
            pool = _health_pool(alias, wrapper.get_connection_params())
        elif not isinstance(pool, ConnectionPool):
            return _failed(
                f"DATABASES[{alias!r}] has a {type(pool).__name__} pool: seerrperf's readiness "
                "needs a psycopg_pool.ConnectionPool (OPTIONS['pool'] on psycopg 3)",
                start,
            )
        else:
            guard_pool(pool)
            if pool.closed:
                pool.open(wait=False)  # what Django does at its first query
    except Exception as exc:
        return _failed(f"the pool of {alias!r} cannot be used: {type(exc).__name__}", start)
    return check_database_health(pool, timeout=seconds)


@require_safe
def live(request: HttpRequest) -> HttpResponse:
    """Liveness: always ``200 {"status":"pass"}``; it never touches the database."""
    return HttpResponse(_LIVE_BODY, content_type=HEALTH_CONTENT_TYPE, headers=no_store_headers())


@require_safe
def ready(request: HttpRequest) -> HttpResponse:
    """Readiness: :func:`check_health` as health+json, 200 or 503, ``no-store``."""
    report = health_report(check_health())
    return HttpResponse(report.json(), status=report.status_code, headers=dict(report.headers))
