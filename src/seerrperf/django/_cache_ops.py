"""Check-and-set steps on a :class:`~seerrperf.NamedCache`, each under the cache's own lock.

Django's cache API has operations that :class:`NamedCache` does not offer as
one call -- ``add`` (store only if absent), ``delete`` that says whether
something was there, ``touch`` (new expiry, same value) and ``incr`` (read,
add, write) -- and each must be atomic: two threads racing ``add`` on one key
must not both win. Built from two calls (a lookup, then a ``set``) they are
not, which is the bug the issue reports in a hand-written backend. So each is
done here in one critical section of the cache's lock, on its store and its
single-flight table, the way :meth:`NamedCache.set` and
:meth:`NamedCache.delete` do it.

This reaches into the cache's internals (``_lock``, ``_store``,
``_flights``, ``_epoch``), which are seerrperf's own: the lock is read on
every call, because a fork replaces it in the child, and every change moves
the epoch on, as the cache's own changes do (a shared-tier read begun before
is then not kept). These steps are local: with a shared tier the backend
publishes their result with :meth:`NamedCache.set` afterwards. Only an entry that is fresh counts
as present; an entry kept stale for a stale-while-revalidate window is
absent to these steps, as it is to ``get``. Pure Python: no Django import.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from seerrperf._cache.flight import MISSING
from seerrperf._cache.named import NamedCache
from seerrperf._cache.store import measure

__all__ = ["add", "delete", "incr", "touch"]


def add(cache: NamedCache, key: Hashable, value: Any, ttl: float) -> bool:
    """Store ``value`` under ``key`` unless a fresh entry exists; return whether it did.

    ``ttl == 0`` stores nothing but still answers ``True`` when the key was
    absent (Django's rule: the value was "added" and expired at once).
    """
    sizes = measure(key, value) if ttl else (0, 0)  # outside the lock
    with cache._lock:
        store = cache._store
        entry = store.find(key)
        if entry is not None and store.now() < entry.fresh_until:
            return False
        cache._epoch += 1
        cache._flights.forget(key)  # a load running for the key no longer stores: add won
        store.put(key, value, ttl, sizes)
        return True


def delete(cache: NamedCache, key: Hashable) -> bool:
    """Remove ``key``; return whether a fresh entry was there."""
    with cache._lock:
        store = cache._store
        entry = store.find(key)
        present = entry is not None and store.now() < entry.fresh_until
        cache._epoch += 1
        cache._flights.forget(key)
        store.discard(key)
        return present


def touch(cache: NamedCache, key: Hashable, ttl: float) -> Any:
    """Give a fresh entry of ``key`` a new time to live; ``ttl == 0`` removes it.

    Returns:
        The entry's stored value, or :data:`MISSING` when there was no fresh entry.
    """
    with cache._lock:
        store = cache._store
        entry = store.find(key)
        if entry is None or not store.now() < entry.fresh_until:
            return MISSING
        cache._epoch += 1
        store.put(key, entry.value, ttl, (entry.key_bytes, entry.value_bytes))
        return entry.value


def incr(
    cache: NamedCache,
    key: Hashable,
    delta: int,
    decode: Callable[[Any], Any],
    encode: Callable[[Any], Any],
) -> tuple[Any, Any, float]:
    """Add ``delta`` to the value of a fresh entry of ``key``; keep its expiry.

    Like memcached and Django's ``LocMemCache``, the entry's expiry does not
    move; it becomes the most recently used.

    Args:
        cache: The cache.
        key: The key.
        delta: What to add (negative to subtract).
        decode: Turns the stored value into the application's value.
        encode: Turns the new value into what is stored.

    Returns:
        The new value, the new stored value and its remaining time to live.

    Raises:
        ValueError: No fresh entry exists for ``key``.
        TypeError: The value does not support ``+ delta`` (``None``, a string).
    """
    with cache._lock:
        store = cache._store
        now = store.now()
        entry = store.find(key)
        if entry is None or not now < entry.fresh_until:
            raise ValueError(f"Key '{key}' not found")  # Django's message
        value = decode(entry.value) + delta
        stored = encode(value)
        ttl = entry.fresh_until - now
        cache._epoch += 1
        cache._flights.forget(key)  # a background refresh must not undo the increment
        store.put(key, stored, ttl, measure(key, stored))
        return value, stored, ttl
