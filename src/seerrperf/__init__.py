"""seerrperf: Seerr's performance and reliability patterns, done better, for Python web apps."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._batch import BatchLoader, BatchLoaderStats, batch_fetch
from ._exceptions import ConfigurationError, SeerrperfError
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
    "BatchLoader",
    "BatchLoaderStats",
    "ConfigurationError",
    "HealthReport",
    "HealthResult",
    "PoolSettings",
    "SeerrperfError",
    "__version__",
    "async_check_database_health",
    "async_pool_factory",
    "batch_fetch",
    "check_database_health",
    "health_report",
    "pool_factory",
]
