"""A registry of named caches, like Seerr's ``cacheManager``, and Seerr's ten caches."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._runtime import Clock, at_fork

from .named import (
    DEFAULT_LOAD_TIMEOUT,
    DEFAULT_MAXSIZE,
    DEFAULT_TTL,
    CacheStats,
    NamedCache,
    clock_argument,
)

if TYPE_CHECKING:
    from seerrperf._redis.backend import RedisBackend

__all__ = ["SEERR_TTLS", "CacheManager"]

SEERR_TTLS: dict[str, float] = {
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
"""Seerr's node-cache instances and their ``stdTTL`` in seconds (``server/lib/cache.ts``).

These are the defaults of Seerr's caches; Seerr's ``ExternalAPI`` stores most
entries with the call's own TTL or 300 s instead (see ``docs/cache.md``).
"""


class CacheManager:
    """A registry of named caches, like Seerr's ``cacheManager``.

    Args:
        clock: Clock given to every cache it creates; pass a
            :class:`seerrperf.testing.FakeClock` in tests.
        timer: Deprecated name of ``clock``.
        shared: A :class:`~seerrperf.RedisBackend` (one per process): every
            cache it creates keeps its in-process tier and gains the shared
            tier ``shared.tier(name)`` beneath it (see ``docs/scale-out.md``),
            and :meth:`flush` empties every cache of every process.

    Raises:
        ConfigurationError: ``clock`` is not callable, both ``clock`` and
            ``timer`` are given, or ``shared`` is not a ``RedisBackend``.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        timer: Clock | None = None,
        shared: RedisBackend | None = None,
    ) -> None:
        self._clock = clock_argument(clock, timer, stacklevel=2)
        self._shared: RedisBackend | None = None
        if shared is not None:
            from seerrperf._redis.backend import RedisBackend

            self._shared = _validate.instance("shared", shared, RedisBackend, "a RedisBackend")
        self._lock = threading.Lock()
        self._caches: dict[str, NamedCache] = {}
        at_fork(self, after_in_child=CacheManager._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The registry's critical sections never span a fork-sensitive step;
        # a lock held by a parent thread at fork time must not stay held here.
        self._lock = threading.Lock()

    @property
    def shared(self) -> RedisBackend | None:
        """The backend whose shared tier is beneath every cache, or ``None``."""
        return self._shared

    @classmethod
    def seerr(
        cls,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Clock = time.monotonic,
        timer: Clock | None = None,
        shared: RedisBackend | None = None,
    ) -> CacheManager:
        """Return a manager holding Seerr's ten caches with Seerr's default TTLs.

        The caches are tmdb, radarr, sonarr, rt, imdb, github, plexguid,
        plextv, plexwatchlist and tvdb, each with the ``stdTTL`` of Seerr's
        ``server/lib/cache.ts``. Unlike Seerr's, each is bounded.

        Args:
            maxsize: Bound of each cache.
            clock: Clock for the caches.
            timer: Deprecated name of ``clock``.
            shared: A ``RedisBackend`` whose shared tier goes beneath every
                cache, as for the constructor.

        Returns:
            A new manager.

        Raises:
            ConfigurationError: ``maxsize`` is not an integer ``>= 1``,
                ``clock`` is not callable, both ``clock`` and ``timer`` are
                given, or ``shared`` is not a ``RedisBackend``.
        """
        manager = cls(clock=clock_argument(clock, timer, stacklevel=2), shared=shared)
        for name, ttl in SEERR_TTLS.items():
            manager.get_cache(name, ttl=ttl, maxsize=maxsize)
        return manager

    def get_cache(
        self,
        name: str,
        *,
        ttl: float | None = None,
        maxsize: int | None = None,
        load_timeout: float | None = None,
        max_loading: int | None = None,
    ) -> NamedCache:
        """Return the cache called ``name``, creating it on first use.

        Args:
            name: The cache's name.
            ttl: Default time to live in seconds (300 when the cache is
                created without one). Omit it to accept the existing cache's.
            maxsize: Bound on entries (10,000 when created without one).
            load_timeout: Seconds a shared load may take (30 when created
                without one).
            max_loading: Most loads in progress at once (``maxsize`` when
                created without one).

        Returns:
            The same :class:`NamedCache` instance for every call with ``name``.

        Raises:
            ConfigurationError: An option is invalid, or ``name`` exists and an
                option given explicitly differs from its current value.
        """
        if ttl is not None:
            ttl = _validate.duration("ttl", ttl)
        if maxsize is not None:
            maxsize = _validate.count("maxsize", maxsize, minimum=1)
        if load_timeout is not None:
            load_timeout = _validate.duration("load_timeout", load_timeout, allow_zero=False)
        if max_loading is not None:
            max_loading = _validate.count("max_loading", max_loading, minimum=1)
        with self._lock:
            cache = self._caches.get(name)
            if cache is None:
                cache = NamedCache(
                    name,
                    ttl=DEFAULT_TTL if ttl is None else ttl,
                    maxsize=DEFAULT_MAXSIZE if maxsize is None else maxsize,
                    clock=self._clock,
                    load_timeout=DEFAULT_LOAD_TIMEOUT if load_timeout is None else load_timeout,
                    max_loading=max_loading,
                    shared=None if self._shared is None else self._shared.tier(name),
                )
                self._caches[name] = cache
                return cache
        for option, given, current in (
            ("ttl", ttl, cache.ttl),
            ("maxsize", maxsize, cache.maxsize),
            ("load_timeout", load_timeout, cache.load_timeout),
            ("max_loading", max_loading, cache.max_loading),
        ):
            if given is not None and given != current:
                raise ConfigurationError(
                    f"cache {name!r} already exists with {option}={current:g}; "
                    f"got {option}={given!r}"
                )
        return cache

    def names(self) -> list[str]:
        """Return the cache names in the order they were created."""
        with self._lock:
            return list(self._caches)

    def stats(self) -> dict[str, CacheStats]:
        """Return every cache's statistics, keyed by name."""
        return {cache.name: cache.stats() for cache in self._all()}

    def clear(self, name: str) -> None:
        """Empty the cache called ``name``.

        Raises:
            KeyError: No cache has that name.
        """
        with self._lock:
            cache = self._caches.get(name)
        if cache is None:
            raise KeyError(f"no cache named {name!r}")
        cache.clear()

    def clear_all(self) -> None:
        """Empty every cache (with a shared tier: each cache in every process)."""
        for cache in self._all():
            cache.clear()

    def flush(self) -> None:
        """Empty every cache, in every process when there is a shared tier (the admin route).

        Locally this is :meth:`clear_all`; with a shared tier it is one
        round trip (``backend.flush()``) for every cache of the namespace,
        whatever their number.
        """
        self.clear_local()
        if self._shared is not None:
            self._shared.flush()

    async def aflush(self) -> None:
        """The async twin of :meth:`flush`."""
        self.clear_local()
        if self._shared is not None:
            await self._shared.aflush()

    def clear_local(self) -> None:
        """Empty every cache in this process only; the shared tier keeps its entries."""
        for cache in self._all():
            cache._clear_local()

    def close(self) -> None:
        """Detach every cache from the shared tier (see :meth:`NamedCache.close`).

        The backend itself is not closed: it is the caller's. The caches work
        on, in this process only.
        """
        with self._lock:
            self._shared = None
            caches = list(self._caches.values())
        for cache in caches:
            cache.close()

    def _use_shared(self, backend: RedisBackend) -> None:
        """Put ``backend``'s shared tier beneath every cache, existing and future.

        For the web integrations, which make the caches when the app is
        built and the backend in each worker process.
        """
        from seerrperf._redis.backend import RedisBackend

        _validate.instance("shared", backend, RedisBackend, "a RedisBackend")
        with self._lock:
            self._shared = backend
            caches = list(self._caches.values())
        for cache in caches:
            cache._attach(backend.tier(cache.name))

    def _all(self) -> list[NamedCache]:
        with self._lock:
            return list(self._caches.values())
