"""SEERRPERF_* keys: checked in init_app, named in every message, secrets never shown."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from seerrperf import CacheManager, ConfigurationError, PoolSettings, SeerrperfError, TtlPolicy
from seerrperf.flask import DEFAULT_MAX_BODY_SIZE, EXTENSION_KEY, Seerrperf
from tests._support import SENTINEL

DSN = "postgresql://app@db.invalid/app"


def make(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SEERRPERF_DATABASE_URL": DSN, **config})
    return app


def test_keys_become_settings() -> None:
    app = make(
        SEERRPERF_POOL={"MAX_SIZE": 5, "application_name": "shop"},
        SEERRPERF_POOL_NAME="shop-pool",
        SEERRPERF_TMDB_ACCESS_TOKEN=SENTINEL,
        SEERRPERF_TMDB_BASE_URL="http://127.0.0.1:9/3",
        SEERRPERF_TTL_POLICY="seerr",
        SEERRPERF_TMDB_OPTIONS={"max_rps": 10},
        SEERRPERF_LOCK_NAMESPACE="shop",
        SEERRPERF_HEALTH_TIMEOUT=0.5,
        SEERRPERF_MAX_BODY_SIZE=4096,
    )
    sp = Seerrperf(app)
    with app.app_context():
        config = sp.config
    assert app.extensions[EXTENSION_KEY] is sp
    assert config.pool == PoolSettings(max_size=5, application_name="shop")
    assert config.pool_name == "shop-pool"
    assert config.ttl_policy == TtlPolicy.seerr()
    assert (config.health_timeout, config.max_body_size) == (0.5, 4096)
    assert config.tmdb_options == {"max_rps": 10}
    assert app.config["MAX_CONTENT_LENGTH"] == 4096
    assert SENTINEL not in repr(config) + repr(sp)


def test_defaults_and_flasks_own_body_limit() -> None:
    plain = make()
    sp = Seerrperf(plain)
    assert plain.config["MAX_CONTENT_LENGTH"] == DEFAULT_MAX_BODY_SIZE
    with plain.app_context():
        assert (sp.config.health_timeout, sp.config.ttl_policy) == (2.0, None)
    flask_limit = make(MAX_CONTENT_LENGTH=1000)
    sp.init_app(flask_limit)  # one extension, several apps
    with flask_limit.app_context():
        assert sp.config.max_body_size == 1000
    unlimited = make(SEERRPERF_MAX_BODY_SIZE=None)
    sp.init_app(unlimited)
    assert unlimited.config["MAX_CONTENT_LENGTH"] is None


def test_the_seerr_preset_fills_the_extensions_caches() -> None:
    caches = CacheManager()
    Seerrperf(make(SEERRPERF_CACHE_PRESET="seerr", SEERRPERF_TMDB_API_KEY="k"), caches=caches)
    assert caches.names()[:3] == ["tmdb", "radarr", "sonarr"]
    assert len(caches.names()) == 10
    assert caches.get_cache("plexguid").ttl == 604_800


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SEERRPERF_HEALTH_TIMOUT": 1.0}, "unknown config key 'SEERRPERF_HEALTH_TIMOUT'"),
        ({"SEERRPERF_HEALTH_TIMEOUT": -1}, "SEERRPERF_HEALTH_TIMEOUT: health_timeout"),
        ({"SEERRPERF_HEALTH_TIMEOUT": "2"}, "SEERRPERF_HEALTH_TIMEOUT"),
        ({"SEERRPERF_LOCK": "redis"}, "SEERRPERF_LOCK: lock must be one of advisory, local"),
        ({"SEERRPERF_CACHE_PRESET": "all"}, "SEERRPERF_CACHE_PRESET"),
        ({"SEERRPERF_TTL_POLICY": "fast"}, "SEERRPERF_TTL_POLICY: ttl_policy must be one of"),
        ({"SEERRPERF_POOL": {"max_sise": 3}}, "SEERRPERF_POOL has an unknown key 'max_sise'"),
        ({"SEERRPERF_POOL": {"max_size": 0}}, "SEERRPERF_POOL: max_size"),
        ({"SEERRPERF_POOL": 5}, "SEERRPERF_POOL: pool must be a PoolSettings"),
        ({"SEERRPERF_TMDB_OPTIONS": {"api_key": 1}}, "SEERRPERF_TMDB_OPTIONS: tmdb_options"),
        (
            {"SEERRPERF_TMDB_API_KEY": SENTINEL, "SEERRPERF_TMDB_OPTIONS": {"max_rps": -5}},
            "max_rps must be",
        ),
        ({"SEERRPERF_TMDB_API_KEY": SENTINEL, "SEERRPERF_TMDB_CACHE_SIZE": 0}, "tmdb_cache_size"),
        ({"SEERRPERF_RELATIVE_REDIRECTS": "yes"}, "SEERRPERF_RELATIVE_REDIRECTS"),
        ({"SEERRPERF_MAX_BODY_SIZE": 10, "MAX_CONTENT_LENGTH": 20}, "disagree"),
        ({"MAX_CONTENT_LENGTH": -1}, "MAX_CONTENT_LENGTH"),
        (
            {"SEERRPERF_TMDB_API_KEY": SENTINEL, "SEERRPERF_TMDB_ACCESS_TOKEN": SENTINEL},
            "set only one of tmdb_api_key and tmdb_access_token",
        ),
        ({"SEERRPERF_TMDB_API_KEY": f"{SENTINEL} x"}, "SEERRPERF_TMDB_API_KEY"),
        ({"SEERRPERF_DATABASE_URL": f"postgresql://u:{SENTINEL}@h/db?nope=1"}, "DSN"),
        ({"SEERRPERF_DATABASE_URL": f"host=h password={SENTINEL} bogus"}, "DSN"),
    ],
)
def test_bad_values_fail_in_init_app_naming_the_key_never_the_secret(
    config: dict[str, Any], message: str
) -> None:
    app = make(**config)
    with pytest.raises(ConfigurationError, match=message) as failed:
        Seerrperf(app)
    assert SENTINEL not in str(failed.value)
    assert EXTENSION_KEY not in app.extensions  # nothing half-installed


def test_init_app_runs_once_per_app_and_accessors_need_it() -> None:
    app = make()
    sp = Seerrperf(app)
    with pytest.raises(SeerrperfError, match="once per app"):
        sp.init_app(app)
    other = Flask("other")
    with other.app_context(), pytest.raises(SeerrperfError, match="init_app"):
        _ = sp.pool
    with pytest.raises(RuntimeError, match="application context"):
        _ = sp.pool


def test_flasks_prefixed_environment_variables_fill_the_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_SEERRPERF_DATABASE_URL", DSN)
    monkeypatch.setenv("FLASK_SEERRPERF_HEALTH_TIMEOUT", "1.5")
    monkeypatch.setenv("FLASK_SEERRPERF_POOL__MAX_SIZE", "5")
    monkeypatch.setenv("FLASK_SEERRPERF_TMDB_OPTIONS", '{"max_rps": null}')
    monkeypatch.setenv("FLASK_SEERRPERF_LOCK", "local")
    app = Flask(__name__)
    app.config.from_prefixed_env()
    sp = Seerrperf(app)
    with app.app_context():
        config = sp.config
    assert (config.health_timeout, config.pool.max_size) == (1.5, 5)
    assert config.tmdb_options == {"max_rps": None}


def test_a_failed_init_app_changes_nothing() -> None:
    caches = CacheManager()
    app = make(
        SEERRPERF_CACHE_PRESET="seerr",
        SEERRPERF_TMDB_API_KEY=SENTINEL,
        SEERRPERF_TMDB_OPTIONS={"timeout": 0},
    )
    with pytest.raises(ConfigurationError, match="SEERRPERF_TMDB_"):
        Seerrperf(app, caches=caches)
    assert caches.names() == []
    assert app.config["MAX_CONTENT_LENGTH"] is None
    assert not app.error_handler_spec[None]
