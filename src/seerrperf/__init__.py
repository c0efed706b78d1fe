"""seerrperf: Seerr's performance and reliability patterns, done better, for Python web apps."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._cache import CachedFunction, CacheManager, CacheStats, NamedCache, cached
from ._exceptions import CacheLoadAbortedError, ConfigurationError, SeerrperfError
from ._health import (
    HealthReport,
    HealthResult,
    async_check_database_health,
    check_database_health,
    health_report,
)
from ._pool import PoolSettings, async_pool_factory, pool_factory

try:
    __version__ = version("seerrperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CacheLoadAbortedError",
    "CacheManager",
    "CacheStats",
    "CachedFunction",
    "ConfigurationError",
    "HealthReport",
    "HealthResult",
    "NamedCache",
    "PoolSettings",
    "SeerrperfError",
    "__version__",
    "async_check_database_health",
    "async_pool_factory",
    "cached",
    "check_database_health",
    "health_report",
    "pool_factory",
]
