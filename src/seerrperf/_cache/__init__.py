"""The cache subsystem: bounded TTL caches with single-flight loading and stale serving."""

from __future__ import annotations

from .named import CachedFunction, CacheManager, CacheStats, NamedCache, cached

__all__ = ["CacheManager", "CacheStats", "CachedFunction", "NamedCache", "cached"]
