"""CACHES settings for the tests of ``seerrperf.django.cache``, without global Django settings.

The tests build their caches through Django's own ``CacheHandler`` given a
``CACHES``-shaped dict: the same code path as ``django.core.cache.caches``
(a backend object per thread, made from ``BACKEND``, ``LOCATION`` and the
rest of the alias's settings), and nothing to configure globally, so these
tests neither depend on nor disturb ``django.conf.settings`` that other
Django tests may configure.
"""

from __future__ import annotations

import itertools
from typing import Any

from django.core.cache import CacheHandler  # type: ignore[import-untyped,unused-ignore]

from seerrperf.testing import FakeClock

BACKEND = "seerrperf.django.cache.SeerrperfCache"

_locations = itertools.count()


def new_location(label: str = "t") -> str:
    """A LOCATION no other test has used (the backend's caches live for the process)."""
    return f"test-{label}-{next(_locations)}"


def custom_key_func(key: Any, key_prefix: str, version: Any) -> str:
    """A key function other than Django's default (as Django's own cache tests use)."""
    return "CUSTOM-" + "-".join([key_prefix, str(version), str(key)])


def caches_setting(clock: FakeClock, **options: Any) -> dict[str, dict[str, Any]]:
    """Django's test aliases (``tests/cache/tests.py``), one shared LOCATION, one clock.

    ``default``, ``prefix``, ``v2``, ``custom_key`` and ``custom_key2`` share
    a LOCATION, and so one NamedCache (Django's suite shares LocMemCache's
    store between them by hand); ``cull`` has a LOCATION of its own and 30
    entries at most.
    """
    location = new_location()
    shared = {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": {"CLOCK": clock, **options}}
    return {
        "default": dict(shared),
        "prefix": {**shared, "KEY_PREFIX": "cacheprefix"},
        "v2": {**shared, "VERSION": 2},
        "custom_key": {**shared, "KEY_FUNCTION": custom_key_func},
        "custom_key2": {
            **shared,
            "KEY_FUNCTION": "tests.web.django._cache_settings.custom_key_func",
        },
        "cull": {
            "BACKEND": BACKEND,
            "LOCATION": new_location("cull"),
            "OPTIONS": {"CLOCK": clock, "MAX_ENTRIES": 30},
        },
    }


def handler(setting: dict[str, dict[str, Any]]) -> Any:
    """Django's ``CacheHandler`` for ``setting``: ``handler[alias]`` as ``caches[alias]``."""
    return CacheHandler(setting)
