"""seerrperf: Seerr's performance and reliability patterns, done better, for Python web apps."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from ._batch import BatchLoader, BatchLoaderStats, batch_fetch
from ._cache import CachedFunction, CacheManager, CacheStats, NamedCache, cached
from ._errors import (
    CacheLoadAbortedError,
    ConfigurationError,
    HeaderParseError,
    LockTimeout,
    SeerrperfError,
    TmdbAuthError,
    TmdbError,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
)
from ._headers import (
    CacheControl,
    cache_control,
    etag_for,
    http_date,
    immutable_headers,
    is_not_modified,
    no_store_headers,
    private_headers,
    swr_headers,
)
from ._lock import AsyncLock, LockStatistics
from ._pg import (
    HealthReport,
    HealthResult,
    PgAdvisoryLock,
    PoolSettings,
    async_check_database_health,
    async_pool_factory,
    check_database_health,
    health_report,
    pool_factory,
)
from ._stats import collect_stats
from ._tmdb import TmdbClient, TmdbStats, TtlPolicy, image_url

try:
    __version__ = version("seerrperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# The library convention: silent unless the application configures logging
# (otherwise warnings reach stderr through Python's last-resort handler).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AsyncLock",
    "BatchLoader",
    "BatchLoaderStats",
    "CacheControl",
    "CacheLoadAbortedError",
    "CacheManager",
    "CacheStats",
    "CachedFunction",
    "ConfigurationError",
    "HeaderParseError",
    "HealthReport",
    "HealthResult",
    "LockStatistics",
    "LockTimeout",
    "NamedCache",
    "PgAdvisoryLock",
    "PoolSettings",
    "SeerrperfError",
    "TmdbAuthError",
    "TmdbClient",
    "TmdbError",
    "TmdbNotFound",
    "TmdbRateLimited",
    "TmdbResponseError",
    "TmdbStats",
    "TmdbUnavailable",
    "TtlPolicy",
    "__version__",
    "async_check_database_health",
    "async_pool_factory",
    "batch_fetch",
    "cache_control",
    "cached",
    "check_database_health",
    "collect_stats",
    "etag_for",
    "health_report",
    "http_date",
    "image_url",
    "immutable_headers",
    "is_not_modified",
    "no_store_headers",
    "pool_factory",
    "private_headers",
    "swr_headers",
]
