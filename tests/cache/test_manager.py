"""Tests for ``CacheManager``: one instance per name, Seerr's preset, stats and clearing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from seerrperf import CacheManager, CacheStats, ConfigurationError
from seerrperf.testing import FakeClock


def test_get_cache_returns_the_same_instance() -> None:
    manager = CacheManager()
    first = manager.get_cache("tmdb", ttl=21_600, maxsize=500)
    assert manager.get_cache("tmdb") is first
    assert manager.get_cache("tmdb", ttl=21_600) is first
    assert manager.get_cache("tmdb", ttl=21_600.0) is first
    assert manager.get_cache("tmdb", maxsize=500) is first
    assert (first.ttl, first.maxsize) == (21_600, 500)
    default = manager.get_cache("other")
    assert (default.ttl, default.maxsize) == (300, 10_000)
    assert (default.load_timeout, default.max_loading) == (30, 10_000)
    bounded = manager.get_cache("bounded", load_timeout=5, max_loading=20)
    assert (bounded.load_timeout, bounded.max_loading) == (5, 20)
    assert manager.get_cache("bounded", load_timeout=5.0, max_loading=20) is bounded


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 300},
        {"maxsize": 10_000},
        {"ttl": 60, "maxsize": 5},
        {"load_timeout": 30},
        {"max_loading": 500},
    ],
)
def test_get_cache_rejects_different_explicit_options(options: dict[str, Any]) -> None:
    manager = CacheManager()
    manager.get_cache("tmdb", ttl=21_600, maxsize=500, load_timeout=10, max_loading=400)
    with pytest.raises(ConfigurationError, match="already exists"):
        manager.get_cache("tmdb", **options)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"ttl": math.inf}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"maxsize": 0}, "maxsize"),
        ({"maxsize": "10"}, "maxsize"),
        ({"load_timeout": 0}, "load_timeout"),
        ({"max_loading": 0}, "max_loading"),
    ],
)
@pytest.mark.parametrize("exists", [False, True])
def test_get_cache_checks_its_options_whether_or_not_the_cache_exists(
    options: dict[str, Any], argument: str, exists: bool
) -> None:
    manager = CacheManager()
    if exists:
        manager.get_cache("tmdb")
    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        manager.get_cache("tmdb", **options)


def test_seerr_preset_has_seerrs_ten_caches_with_their_ttls_and_a_bound() -> None:
    manager = CacheManager.seerr(maxsize=1_000)
    expected = {
        "tmdb": 21_600,
        "radarr": 300,
        "sonarr": 300,
        "rt": 43_200,
        "imdb": 43_200,
        "github": 21_600,
        "plexguid": 604_800,
        "plextv": 604_800,
        "plexwatchlist": 300,
        "tvdb": 21_600,
    }
    assert manager.names() == list(expected)
    for name, ttl in expected.items():
        cache = manager.get_cache(name)
        assert (cache.ttl, cache.maxsize) == (ttl, 1_000)
    assert CacheManager.seerr().get_cache("tmdb").maxsize == 10_000


def test_manager_stats_clear_and_unknown_names(clock: FakeClock) -> None:
    manager = CacheManager(clock=clock)
    manager.get_cache("a").set("k", 1)
    manager.get_cache("b").set("k", 2)
    stats = manager.stats()
    assert set(stats) == {"a", "b"}
    assert all(isinstance(s, CacheStats) and s.keys == 1 for s in stats.values())
    manager.clear("a")
    assert len(manager.get_cache("a")) == 0
    assert len(manager.get_cache("b")) == 1
    with pytest.raises(KeyError, match="nope"):
        manager.clear("nope")
    manager.clear_all()
    assert len(manager.get_cache("b")) == 0


@pytest.mark.parametrize("make", [CacheManager, CacheManager.seerr])
def test_the_managers_clock_reaches_every_cache(make: Any, clock: FakeClock) -> None:
    cache = make(clock=clock).get_cache("tmdb", ttl=21_600)
    cache.set("k", 1)
    clock.advance(21_599)
    assert "k" in cache
    clock.advance(1)
    assert "k" not in cache


@pytest.mark.parametrize("make", [CacheManager, CacheManager.seerr])
def test_timer_is_a_deprecated_name_for_the_managers_clock(make: Any, clock: FakeClock) -> None:
    with pytest.warns(DeprecationWarning, match="pass clock= instead") as warned:
        manager = make(timer=clock)
    assert warned[0].filename == __file__
    cache = manager.get_cache("tmdb", ttl=21_600)
    cache.set("k", 1)
    clock.advance(21_600)
    assert "k" not in cache
    with pytest.raises(ConfigurationError, match="must not both be given"):
        make(clock=clock, timer=clock)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: CacheManager.seerr(maxsize=0), "maxsize"),
        (lambda: CacheManager(clock=None), "clock"),  # type: ignore[arg-type]
        (lambda: CacheManager.seerr(clock="now"), "clock"),  # type: ignore[arg-type]
        (lambda: CacheManager().get_cache(""), "name"),
    ],
)
def test_invalid_manager_arguments_raise_configuration_error(build: Any, argument: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        build()
