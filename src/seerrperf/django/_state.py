"""This process's checked settings and objects: the TMDB client, the caches, the lock."""

from __future__ import annotations

import logging
import os
import threading
from contextlib import AbstractContextManager
from typing import Any, TypeAlias

from django.conf import settings
from django.core.signals import setting_changed

from seerrperf import CacheManager, KeyedLock, SeerrperfError, TmdbClient
from seerrperf._cache.manager import SEERR_TTLS
from seerrperf._web.process import PerProcess

from ._config import SETTING, DjangoConfig
from ._lock import DjangoAdvisoryLock

__all__ = ["Lock", "caches", "close", "config", "hold", "lock", "stats", "tmdb"]

logger = logging.getLogger("seerrperf.django")

Lock: TypeAlias = DjangoAdvisoryLock | KeyedLock
"""What :func:`lock` gives: ``with lock(key, timeout=...):`` for both."""

_guard = threading.Lock()
_config: DjangoConfig | None = None
# Caches exist from import: @cached(caches().get_cache(...)) works at import time.
_caches = CacheManager()


def config() -> DjangoConfig:
    """``settings.SEERRPERF``, checked once (again after ``override_settings`` changes it).

    Raises:
        ConfigurationError: the setting has an unknown key or a bad value.
    """
    global _config
    found = _config
    if found is not None:
        return found
    with _guard:
        if _config is None:
            checked = DjangoConfig.from_setting(getattr(settings, SETTING, None))
            if checked.cache_preset == "seerr":
                for name, ttl in SEERR_TTLS.items():
                    _caches.get_cache(name, ttl=ttl)
            if checked.integration.has_tmdb:
                checked.integration.tmdb_cache(_caches)  # a size clash shows now
            _config = checked
        return _config


def _make_tmdb() -> TmdbClient | None:
    shared = config().integration
    if not shared.has_tmdb:
        return None
    client = TmdbClient(**shared.tmdb_arguments(_caches))
    logger.debug("seerrperf made its TMDB client in process %d", os.getpid())
    return client


def _make_lock() -> Lock:
    checked = config()
    if checked.lock == "local":
        return KeyedLock()
    return DjangoAdvisoryLock(namespace=checked.integration.lock_namespace, using=checked.database)


_tmdb: PerProcess[TmdbClient | None] = PerProcess(
    _make_tmdb, close=lambda client: client.close() if client is not None else None
)
_lock: PerProcess[Lock] = PerProcess(_make_lock, close=lambda _: None)


def tmdb() -> TmdbClient:
    """This process's :class:`~seerrperf.TmdbClient` (sync: cached, coalesced, rate-limited).

    Made on first use in each process (after gunicorn's fork) and closed at
    exit; threads share it. In an async view, call it through
    ``asgiref.sync.sync_to_async``.

    Raises:
        SeerrperfError: ``SEERRPERF`` has no TMDB credential.
        ConfigurationError: ``SEERRPERF`` is invalid.
    """
    client = _tmdb()
    if client is None:
        raise SeerrperfError(
            "no TMDB client: set SEERRPERF = {'TMDB_ACCESS_TOKEN': ...} (or TMDB_API_KEY)"
        )
    return client


def lock() -> Lock:
    """This process's per-key lock, as ``SEERRPERF["LOCK"]`` says.

    ``"advisory"`` (the default): a :class:`DjangoAdvisoryLock` on
    ``SEERRPERF["DATABASE"]``, holding across processes and hosts;
    ``"local"``: a :class:`~seerrperf.KeyedLock` for the threads of this process.
    """
    return _lock()


def hold(key: object, *, timeout: float | None = None) -> AbstractContextManager[None]:
    """Hold ``key`` with :func:`lock` for a block: ``with hold(("movie", 603), timeout=5):``.

    Raises:
        ConfigurationError: ``key`` is not a str, int, bytes, bool, None or a
            tuple of those, or ``timeout`` is negative or not finite.
        LockTimeout: (on entering) the key was not acquired in time (an
            outage the middleware answers 503 ``busy``).
    """
    return _lock()(key, timeout=timeout)


def caches() -> CacheManager:
    """The process's :class:`~seerrperf.CacheManager` (the TMDB client caches in ``tmdb``)."""
    return _caches


def stats() -> dict[str, Any]:
    """:func:`~seerrperf.collect_stats` of the caches, TMDB client and lock made so far."""
    from seerrperf import collect_stats

    made_lock = _lock.peek()
    return collect_stats(
        caches=_caches,
        tmdb=_tmdb.peek(),
        locks=None if made_lock is None else {"lock": made_lock},
    )


def close() -> None:
    """Close what this process made (the TMDB client); the next use makes it again.

    Processes close theirs at exit by themselves; call this where exit hooks
    do not run, or to start afresh (tests).
    """
    _tmdb.close()
    _lock.close()


def _reset(*, setting: str, **_: object) -> None:
    """``override_settings(SEERRPERF=...)`` in tests: read it again, make new objects."""
    global _config
    if setting == SETTING:
        with _guard:
            _config = None
        close()


setting_changed.connect(_reset, dispatch_uid="seerrperf.django.settings")
