"""The public API is exactly what __all__ says, and it stays that way on purpose."""

from __future__ import annotations

import pytest

import seerrperf
import seerrperf.testing

EXPECTED = {
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
    "KeyedLock",
    "LockLost",
    "Invalidation",
    "JsonSerializer",
    "Lease",
    "LockStatistics",
    "LockStats",
    "LockTimeout",
    "NamedCache",
    "PgAdvisoryLock",
    "PickleSerializer",
    "PoolSettings",
    "RedisBackend",
    "RedisRateLimiter",
    "RedisStats",
    "PoolConfigurationError",
    "PoolForkedError",
    "PoolStats",
    "QueryTimeout",
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
}

DEPRECATED = {"LockStatistics": "LockStats"}  # old name -> new name, for one release

EXPECTED_TESTING = {
    "FakeClock",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "FakeTmdb",
    "FakeTmdbStats",
    "embedded_postgres",
    "embedded_redis",
}


def test_all_is_pinned() -> None:
    assert set(seerrperf.__all__) == EXPECTED
    assert sorted(seerrperf.__all__) == list(seerrperf.__all__)


def test_every_exported_name_exists_and_is_documented() -> None:
    current = EXPECTED - set(DEPRECATED)  # their objects are checked under their new names
    for module, names in ((seerrperf, current), (seerrperf.testing, EXPECTED_TESTING)):
        for name in names:
            obj = getattr(module, name)
            if name != "__version__":
                assert obj.__doc__, f"{name} has no docstring"


def test_deprecated_names_warn_and_give_the_new_object() -> None:
    for old, new in DEPRECATED.items():
        with pytest.warns(DeprecationWarning, match=f"seerrperf.{old} is deprecated.*{new}"):
            obj = getattr(seerrperf, old)
        assert obj is getattr(seerrperf, new)


def test_testing_all_is_pinned() -> None:
    assert set(seerrperf.testing.__all__) == EXPECTED_TESTING


def test_starlette_all_is_pinned() -> None:
    import seerrperf.starlette

    assert seerrperf.starlette.__all__ == ["json_response"]
    assert seerrperf.starlette.json_response.__doc__


def test_fastapi_all_is_pinned() -> None:
    import seerrperf.fastapi

    assert seerrperf.fastapi.__all__ == [
        "DEFAULT_MAX_BODY_SIZE",
        "AdvisoryLock",
        "Caches",
        "GuardMiddleware",
        "Lock",
        "Pool",
        "Seerrperf",
        "Tmdb",
        "add_exception_handlers",
        "json_body",
        "json_response",
    ]
    for name in ("Seerrperf", "GuardMiddleware", "add_exception_handlers", "json_body"):
        assert getattr(seerrperf.fastapi, name).__doc__, name


def test_flask_all_is_pinned() -> None:
    import seerrperf.flask

    assert seerrperf.flask.__all__ == [
        "DEFAULT_MAX_BODY_SIZE",
        "EXTENSION_KEY",
        "PREFIX",
        "Lock",
        "PerProcess",
        "Seerrperf",
        "WsgiGuard",
        "add_error_handlers",
        "json_response",
    ]
    for name in ("Seerrperf", "PerProcess", "WsgiGuard", "add_error_handlers", "json_response"):
        assert getattr(seerrperf.flask, name).__doc__, name


def test_version_comes_from_metadata() -> None:
    from importlib.metadata import version

    assert seerrperf.__version__ == version("seerrperf")


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(seerrperf.ConfigurationError, ValueError)
    assert issubclass(seerrperf.ConfigurationError, seerrperf.SeerrperfError)


def test_header_parse_error_is_a_value_error_but_not_a_configuration_error() -> None:
    assert issubclass(seerrperf.HeaderParseError, ValueError)
    assert issubclass(seerrperf.HeaderParseError, seerrperf.SeerrperfError)
    assert not issubclass(seerrperf.HeaderParseError, seerrperf.ConfigurationError)
