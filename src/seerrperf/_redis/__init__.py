"""Scale-out on Redis or Valkey: a shared cache tier, fleet-wide single-flight, invalidations
in every process, a fleet-wide rate limit -- and nothing that fails when Redis does.

- :mod:`.backend`: :class:`RedisBackend`, one per process (clients, breaker,
  subscriber thread, fork safety, stats).
- :mod:`.tier`: :class:`SharedTier`, one cache's entries, leases and
  invalidations; :class:`Acquisition`, the decisions of ``get_or_load``.
- :mod:`.limiter`: :class:`RedisRateLimiter`, the TMDB ``Throttle``'s fleet twin.
- :mod:`.health`: ``check_redis_health`` / ``async_check_redis_health``.
- Pure parts: :mod:`.keyspace` (names, digests, messages), :mod:`.scripts`
  (Lua), :mod:`.codec` (serializers), :mod:`.breaker`, :mod:`.pending`,
  :mod:`.waiters`, :mod:`.stats`; :mod:`.subscriber` is the thread.

Nothing here imports redis-py until a backend is made.
"""

from __future__ import annotations

from .backend import RedisBackend, Subscription
from .codec import JsonSerializer, PickleSerializer, Serializer
from .health import async_check_redis_health, check_redis_health
from .limiter import RedisRateLimiter
from .stats import RedisStats
from .tier import Invalidation, Lease, SharedLoad, SharedLookup, SharedTier

__all__ = [
    "Invalidation",
    "JsonSerializer",
    "Lease",
    "PickleSerializer",
    "RedisBackend",
    "RedisRateLimiter",
    "RedisStats",
    "Serializer",
    "SharedLoad",
    "SharedLookup",
    "SharedTier",
    "Subscription",
    "async_check_redis_health",
    "check_redis_health",
]
