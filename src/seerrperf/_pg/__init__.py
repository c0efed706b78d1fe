"""The PostgreSQL subsystem: tuned pools, health checks with hard deadlines, advisory locks."""

from __future__ import annotations

from .advisory import AsyncPgAdvisoryLock, PgAdvisoryLock
from .health import (
    HealthReport,
    HealthResult,
    async_check_database_health,
    check_database_health,
    health_report,
)
from .pool import (
    AsyncConnection,
    AsyncTunedConnectionPool,
    PoolSettings,
    PoolStats,
    SyncConnection,
    TunedConnectionPool,
    async_pool_factory,
    pool_factory,
)

__all__ = [
    "AsyncConnection",
    "AsyncPgAdvisoryLock",
    "AsyncTunedConnectionPool",
    "HealthReport",
    "HealthResult",
    "PgAdvisoryLock",
    "PoolSettings",
    "PoolStats",
    "SyncConnection",
    "TunedConnectionPool",
    "async_check_database_health",
    "async_pool_factory",
    "check_database_health",
    "health_report",
    "pool_factory",
]
