"""IntegrationConfig: one set of checked settings for every framework integration."""

from __future__ import annotations

from typing import Any

import pytest

from seerrperf import CacheManager, ConfigurationError, PoolSettings, TtlPolicy
from seerrperf._web import IntegrationConfig
from tests._support import SENTINEL


def test_defaults_build_nothing_and_have_no_tmdb() -> None:
    config = IntegrationConfig()
    assert not config.has_tmdb
    assert config.health_timeout == 2.0
    assert config.max_body_size == 1_048_576
    assert config.pool_arguments() == {
        "dsn": None,
        "settings": PoolSettings(),
        "kwargs": {},
        "name": None,
    }
    with pytest.raises(ConfigurationError, match="TMDB_API_TOKEN"):
        config.tmdb_arguments(CacheManager())


def test_tmdb_arguments_cache_in_the_managers_tmdb_cache() -> None:
    caches = CacheManager()
    policy = TtlPolicy.by_volatility()
    config = IntegrationConfig(
        tmdb_access_token=SENTINEL,
        tmdb_base_url="http://127.0.0.1:9/3",
        ttl_policy=policy,
        tmdb_cache_size=50,
        tmdb_options={"timeout": 3.0, "language": "en-US"},
    )
    arguments = config.tmdb_arguments(caches)
    assert arguments == {
        "api_key": None,
        "access_token": SENTINEL,
        "cache": caches.get_cache("tmdb"),
        "ttl_policy": policy,
        "timeout": 3.0,
        "language": "en-US",
        "base_url": "http://127.0.0.1:9/3",
    }
    assert caches.get_cache("tmdb").maxsize == 50
    # An existing tmdb cache (CacheManager.seerr()) is taken as it is.
    seerr = CacheManager.seerr()
    assert IntegrationConfig(tmdb_api_key="k").tmdb_cache(seerr) is seerr.get_cache("tmdb")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tmdb_api_key": "a", "tmdb_access_token": "b"}, "only one"),
        ({"tmdb_access_token": f"{SENTINEL} with space"}, "tmdb_access_token"),
        ({"tmdb_api_key": f"{SENTINEL}\u00e9"}, "tmdb_api_key"),
        ({"tmdb_options": {"api_key": SENTINEL}}, "tmdb_options may not set api_key"),
        ({"tmdb_options": {"http_client": None}}, "http_client"),
        ({"health_timeout": 0}, "health_timeout"),
        ({"health_timeout": 61}, "health_timeout"),
        ({"health_timeout": float("nan")}, "health_timeout"),
        ({"max_body_size": -1}, "max_body_size"),
        ({"max_body_size": 1.5}, "max_body_size"),
        ({"database_url": "  "}, "database_url"),
        ({"database_url": 5}, "database_url"),
        ({"pool": {"max_size": 5}}, "pool must be a PoolSettings"),
        ({"tmdb_cache_size": 0}, "tmdb_cache_size"),
        ({"lock_namespace": ""}, "lock_namespace"),
        ({"ttl_policy": 300}, "ttl_policy"),
        ({"redis_url": f"http://:{SENTINEL}@cache"}, "redis_url must start with redis://"),
        ({"redis_url": f"redis://:{SENTINEL} @cache"}, "redis_url"),
        ({"redis_url": ""}, "redis_url"),
    ],
)
def test_bad_settings_are_named_and_never_echo_a_secret(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        IntegrationConfig(**fields)
    assert SENTINEL not in str(caught.value)


def test_secrets_stay_out_of_the_repr() -> None:
    config = IntegrationConfig(
        database_url=f"postgresql://app:{SENTINEL}@db/app",
        pool_kwargs={"password": SENTINEL},
        tmdb_access_token=SENTINEL,
    )
    assert SENTINEL not in repr(config)


def test_from_env_reads_five_variables_and_code_wins() -> None:
    environ = {
        "DATABASE_URL": "postgresql://db/app",
        "TMDB_API_TOKEN": SENTINEL,
        "TMDB_BASE_URL": "http://127.0.0.1:9/3",
        "TMDB_API_KEY": "  ",  # empty once stripped: skipped
        "REDIS_URL": f"redis://:{SENTINEL}@cache:6379/0",
        "MEMCACHED_URL": "memcached://ignored",
    }
    config = IntegrationConfig.from_env(environ, health_timeout=1.0)
    assert config.database_url == "postgresql://db/app"
    assert config.tmdb_access_token == SENTINEL
    assert config.tmdb_api_key is None
    assert config.tmdb_base_url == "http://127.0.0.1:9/3"
    assert config.health_timeout == 1.0
    assert config.redis_url == f"redis://:{SENTINEL}@cache:6379/0"
    assert SENTINEL not in repr(config)
    # A credential in code replaces both credential variables: no "only one" clash.
    keyed = IntegrationConfig.from_env(environ, tmdb_api_key="k")
    assert (keyed.tmdb_api_key, keyed.tmdb_access_token) == ("k", None)
    assert IntegrationConfig.from_env({}) == IntegrationConfig()
    with pytest.raises(ConfigurationError, match="unknown setting"):
        IntegrationConfig.from_env({}, tmdb_token="x")


def test_from_mapping_takes_framework_style_keys() -> None:
    config = IntegrationConfig.from_mapping(
        {"DATABASE_URL": "postgresql://db/app", "health_timeout": 1.5}, source="SEERRPERF"
    )
    assert (config.database_url, config.health_timeout) == ("postgresql://db/app", 1.5)
    with pytest.raises(ConfigurationError, match="SEERRPERF has an unknown key 'TMDB_TOKEN'"):
        IntegrationConfig.from_mapping({"TMDB_TOKEN": SENTINEL}, source="SEERRPERF")
    with pytest.raises(ConfigurationError, match="HEALTH_TIMEOUT twice"):
        IntegrationConfig.from_mapping({"HEALTH_TIMEOUT": 1, "health_timeout": 2})


def test_replace_checks_again() -> None:
    config = IntegrationConfig().replace(max_body_size=None, lock_namespace="media")
    assert (config.max_body_size, config.lock_namespace) == (None, "media")
    with pytest.raises(ConfigurationError, match="health_timeout"):
        config.replace(health_timeout=-1)


def test_a_shared_tier_gives_the_tmdb_client_the_fleets_rate_limiter(redis_url: str) -> None:
    config = IntegrationConfig(
        redis_url=redis_url, lock_namespace="config-test", tmdb_access_token=SENTINEL
    )
    assert IntegrationConfig().redis_backend() is None
    backend = config.redis_backend()
    assert backend is not None
    with backend:
        assert backend.namespace == "config-test"
        caches = CacheManager(shared=backend)
        limiter = config.tmdb_arguments(caches)["rate_limiter"]
        assert (limiter.name, limiter.max_rps) == ("tmdb", 50)
        slow = config.replace(tmdb_options={"max_rps": 5}).tmdb_arguments(caches)
        assert slow["rate_limiter"].max_rps == 5
        unlimited = config.replace(tmdb_options={"max_rps": None}).tmdb_arguments(caches)
        assert "rate_limiter" not in unlimited
        assert "rate_limiter" not in config.tmdb_arguments(CacheManager())
        caches.close()
