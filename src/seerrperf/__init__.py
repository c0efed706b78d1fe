"""seerrperf: Seerr's performance and reliability patterns, done better, for Python web apps."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ._batch import BatchLoader, BatchLoaderStats, batch_fetch
from ._cache import CachedFunction, CacheManager, CacheStats, NamedCache, cached
from ._errors import (
    CacheLoadAbortedError,
    CacheLoadTimeout,
    CacheOverloadedError,
    ConfigurationError,
    HeaderParseError,
    LockLost,
    LockTimeout,
    PoolConfigurationError,
    PoolForkedError,
    QueryTimeout,
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
from ._locks import AsyncLock, KeyedLock, LockStats
from ._pg import (
    AsyncPgAdvisoryLock,
    AsyncTunedConnectionPool,
    HealthReport,
    HealthResult,
    PgAdvisoryLock,
    PoolSettings,
    PoolStats,
    TunedConnectionPool,
    async_check_database_health,
    async_pool_factory,
    check_database_health,
    health_report,
    pool_factory,
)
from ._redis import (
    Invalidation,
    JsonSerializer,
    Lease,
    PickleSerializer,
    RedisBackend,
    RedisRateLimiter,
    RedisStats,
    Serializer,
    SharedLoad,
    SharedLookup,
    SharedTier,
    Subscription,
    async_check_redis_health,
    check_redis_health,
)
from ._stats import collect_stats
from ._tmdb import AsyncTmdbClient, TmdbClient, TmdbStats, TtlPolicy, image_url

if TYPE_CHECKING:
    LockStatistics = LockStats  # deprecated alias, see __getattr__

try:
    __version__ = version("seerrperf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# The library convention: silent unless the application configures logging
# (otherwise warnings reach stderr through Python's last-resort handler).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AsyncLock",
    "AsyncPgAdvisoryLock",
    "AsyncTmdbClient",
    "AsyncTunedConnectionPool",
    "BatchLoader",
    "BatchLoaderStats",
    "CacheControl",
    "CacheLoadAbortedError",
    "CacheLoadTimeout",
    "CacheManager",
    "CacheOverloadedError",
    "CacheStats",
    "CachedFunction",
    "ConfigurationError",
    "HeaderParseError",
    "HealthReport",
    "HealthResult",
    "Invalidation",
    "JsonSerializer",
    "KeyedLock",
    "Lease",
    "LockLost",
    "LockStatistics",
    "LockStats",
    "LockTimeout",
    "NamedCache",
    "PgAdvisoryLock",
    "PickleSerializer",
    "PoolConfigurationError",
    "PoolForkedError",
    "PoolSettings",
    "PoolStats",
    "QueryTimeout",
    "RedisBackend",
    "RedisRateLimiter",
    "RedisStats",
    "SeerrperfError",
    "Serializer",
    "SharedLoad",
    "SharedLookup",
    "SharedTier",
    "Subscription",
    "TmdbAuthError",
    "TmdbClient",
    "TmdbError",
    "TmdbNotFound",
    "TmdbRateLimited",
    "TmdbResponseError",
    "TmdbStats",
    "TmdbUnavailable",
    "TtlPolicy",
    "TunedConnectionPool",
    "__version__",
    "async_check_database_health",
    "async_check_redis_health",
    "async_pool_factory",
    "batch_fetch",
    "cache_control",
    "cached",
    "check_database_health",
    "check_redis_health",
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


# Deprecated names: they keep working for one release and warn when used.
_RENAMED = {"LockStatistics": ("LockStats", LockStats)}


def __getattr__(name: str) -> object:
    if name in _RENAMED:
        import warnings  # only a deprecated name needs it

        new_name, obj = _RENAMED[name]
        warnings.warn(
            f"seerrperf.{name} is deprecated and will be removed in the next release; "
            f"use seerrperf.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return obj
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
