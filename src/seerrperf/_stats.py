"""One JSON-ready snapshot of everything seerrperf measures, for a debug endpoint.

The seed asks to watch pool usage, cache hit rates, API response times and
external API call counts; :func:`collect_stats` gathers them in one dict and
:mod:`seerrperf.prometheus` exports the same figures as metrics. A snapshot
costs the same with 10 or 100,000 cache entries: byte sizes are the caches'
running sums (each entry measured once, when stored); the walk over every
entry runs only when asked for (``sizes="exact"``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import _validate
from ._cache import CacheManager, NamedCache
from ._errors import ConfigurationError
from ._pg import AsyncTunedConnectionPool, TunedConnectionPool
from ._runtime import HistogramSnapshot
from ._tmdb.client import AsyncTmdbClient, BaseTmdbClient, TmdbClient

if TYPE_CHECKING:
    from ._redis.backend import RedisBackend

__all__ = ["Caches", "Lock", "Tmdb", "collect_stats", "pool_stats", "upstream_latency"]


class _Snapshot(Protocol):
    """A statistics snapshot: a frozen ``*Stats`` dataclass, or anything alike."""

    def as_dict(self) -> Mapping[str, Any]:
        """Return the figures, JSON-ready."""
        ...


@runtime_checkable
class Lock(Protocol):
    """Anything whose ``stats()`` returns a snapshot with ``as_dict()``: every
    seerrperf lock, or a lock of the application's own."""

    def stats(self) -> _Snapshot:
        """Return the lock's current figures."""
        ...


Caches: TypeAlias = CacheManager | NamedCache | Mapping[str, NamedCache] | Iterable[NamedCache]
Tmdb: TypeAlias = TmdbClient | AsyncTmdbClient
"""A TMDB client, sync or async (both share :class:`BaseTmdbClient`)."""

# psycopg_pool omits counters that are still zero; the snapshot always has them all.
POOL_COUNTERS = (
    "pool_min",
    "pool_max",
    "pool_size",
    "pool_available",
    "requests_waiting",
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
)


def pool_stats(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> dict[str, Any]:
    """Return a pool's psycopg_pool counters, complete, plus derived figures.

    ``in_use`` is connections checked out now, ``utilisation`` is ``in_use /
    pool_max``, ``avg_wait_ms`` the mean wait of the requests that queued.

    A pool made by seerrperf's factories reports its own
    :class:`~seerrperf.PoolStats`: the same keys, true during an outage
    (``pool_size`` counts open connections, not attempts still connecting;
    ``requests_waiting`` counts callers waiting now), and more (the growth
    limit, query timeouts, the timeouts the server enforces). For any other
    pool the figures are psycopg_pool's own; there ``in_use`` also counts
    connections still being opened, as psycopg_pool does.
    """
    if isinstance(pool, TunedConnectionPool | AsyncTunedConnectionPool):
        return pool.stats().as_dict()
    raw = pool.get_stats()
    stats: dict[str, Any] = {"name": pool.name}
    stats.update({key: int(raw.get(key, 0)) for key in POOL_COUNTERS})
    in_use = max(0, stats["pool_size"] - stats["pool_available"])
    stats["in_use"] = in_use
    stats["utilisation"] = in_use / stats["pool_max"] if stats["pool_max"] else 0.0
    queued = stats["requests_queued"]
    stats["avg_wait_ms"] = stats["requests_wait_ms"] / queued if queued else 0.0
    return stats


_CACHES = "a CacheManager, a NamedCache, or a mapping or iterable of NamedCache"
_LOCKS = "a lock (an object with stats()) or a mapping of names to locks"


def _named_caches(caches: object) -> dict[str, NamedCache]:
    if isinstance(caches, CacheManager):
        return {name: caches.get_cache(name) for name in caches.names()}
    if isinstance(caches, NamedCache):
        return {caches.name: caches}
    if isinstance(caches, Mapping):
        named = dict(caches)
    elif isinstance(caches, Iterable) and not isinstance(caches, str | bytes):
        named = {getattr(cache, "name", None): cache for cache in caches}
    else:
        raise ConfigurationError(f"caches must be {_CACHES}, got {type(caches).__name__}")
    for name, cache in named.items():
        if not isinstance(name, str) or not isinstance(cache, NamedCache):
            raise ConfigurationError(f"caches must be {_CACHES}; got a {type(cache).__name__}")
    return named


def _named_locks(locks: object) -> dict[str, Lock]:
    if isinstance(locks, Lock) and callable(locks.stats):
        return {"default": locks}
    if not isinstance(locks, Mapping):
        raise ConfigurationError(f"locks must be {_LOCKS}, got {type(locks).__name__}")
    for name, lock in locks.items():
        if not isinstance(name, str) or not (isinstance(lock, Lock) and callable(lock.stats)):
            raise ConfigurationError(f"locks must be {_LOCKS}; got a {type(lock).__name__}")
    return dict(locks)


def upstream_latency(tmdb: Tmdb) -> HistogramSnapshot:
    """Return the TMDB client's upstream latency histogram (seconds), as its transport keeps it."""
    # The transport's LatencyHistogram has no public accessor on the client yet.
    snapshot: HistogramSnapshot = tmdb._transport.latency.snapshot()
    return snapshot


def _cache_row(cache: NamedCache, sizes: bool | Literal["exact"]) -> dict[str, Any]:
    row = cache.stats(sizes=sizes).as_dict()
    if not sizes:
        # Not computed: a 0 here would read as "no memory held".
        row.pop("key_bytes", None)
        row.pop("value_bytes", None)
    return row


def collect_stats(
    *,
    pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None = None,
    caches: Caches | None = None,
    tmdb: Tmdb | None = None,
    locks: Lock | Mapping[str, Lock] | None = None,
    sizes: bool | Literal["exact"] = True,
    redis: RedisBackend | None = None,
) -> dict[str, Any]:
    """Return one JSON-ready snapshot of pool, caches, TMDB client, locks and Redis.

    Args:
        pool: A psycopg_pool pool (sync or async): connections in use, idle,
            waiting requests, wait times, errors.
        caches: A :class:`CacheManager`, a mapping of names to
            :class:`NamedCache`, or caches: per-cache hits, misses, hit rate,
            keys, byte sizes.
        tmdb: A :class:`TmdbClient` or :class:`AsyncTmdbClient`: requests,
            upstream calls, cache hits, coalesced waiters, retries, 429s,
            errors, latency p50/p95.
        locks: A lock -- any seerrperf lock, or an object of your own whose
            ``stats()`` returns something with ``as_dict()`` -- or a mapping
            of names to locks: held keys, waiting tasks, contention, timeouts.
        sizes: ``True``: ``key_bytes`` and ``value_bytes`` as each cache
            keeps them (every entry measured once, when stored: O(1) here).
            ``"exact"``: measured again now by walking every entry (time
            proportional to the cached data: for a debug page, not for every
            scrape; it sees values mutated after they were stored).
            ``False``: the two fields are left out.
        redis: A :class:`~seerrperf.RedisBackend`: this process's
            :class:`~seerrperf.RedisStats` (shared hits and misses, round
            trips, errors, fallbacks, leases, invalidations, limiter waits).
            By default the backend of ``caches`` when that is a
            ``CacheManager(shared=backend)``.

    Returns:
        ``{"collected_at": ISO time, "pool": ..., "caches": ..., "tmdb": ...,
        "locks": ..., "redis": ...}`` with only the sections given.

    Raises:
        ConfigurationError: nothing was given to collect, or an argument is
            not of a kind it can collect (checked before anything is read).
    """
    if pool is None and caches is None and tmdb is None and locks is None and redis is None:
        raise ConfigurationError(
            "collect_stats needs at least one of pool, caches, tmdb, locks, redis"
        )
    if redis is not None:
        from ._redis.backend import RedisBackend

        _validate.instance("redis", redis, RedisBackend, "a RedisBackend")
    elif isinstance(caches, CacheManager):
        redis = caches.shared
    if pool is not None:
        _validate.instance(
            "pool", pool, (ConnectionPool, AsyncConnectionPool), "a psycopg_pool pool"
        )
    if tmdb is not None:
        _validate.instance("tmdb", tmdb, BaseTmdbClient, "a TmdbClient or AsyncTmdbClient")
    if sizes != "exact":
        _validate.flag("sizes", sizes)
    named_caches = None if caches is None else _named_caches(caches)
    named_locks = None if locks is None else _named_locks(locks)
    snapshot: dict[str, Any] = {
        "collected_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    }
    if pool is not None:
        snapshot["pool"] = pool_stats(pool)
    if named_caches is not None:
        snapshot["caches"] = {
            name: _cache_row(cache, sizes) for name, cache in named_caches.items()
        }
    if tmdb is not None:
        snapshot["tmdb"] = tmdb.stats().as_dict()
    if named_locks is not None:
        snapshot["locks"] = {
            name: dict(lock.stats().as_dict()) for name, lock in named_locks.items()
        }
    if redis is not None:
        snapshot["redis"] = redis.stats().as_dict()
    return snapshot
