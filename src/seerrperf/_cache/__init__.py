"""The cache subsystem: bounded TTL caches with single-flight loading and stale serving.

- :mod:`.store`: the bounded storage (TTL and stale deadlines, LRU eviction, sizes).
- :mod:`.flight`: the single-flight state machine and the stale rules, shared by
  the sync and async paths.
- :mod:`.named`: :class:`NamedCache`, the public face, and :class:`CacheStats`.
- :mod:`.manager`: :class:`CacheManager` and Seerr's ten caches.
- :mod:`.decorator`: :func:`cached`.
"""

from __future__ import annotations

from .decorator import CachedFunction, cached
from .manager import CacheManager
from .named import CacheStats, NamedCache

__all__ = ["CacheManager", "CacheStats", "CachedFunction", "NamedCache", "cached"]
