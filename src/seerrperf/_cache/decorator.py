"""``@cached``: a sync or async function's results in a :class:`NamedCache`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from seerrperf import _validate

from .named import FunctionTag, NamedCache

__all__ = ["CachedFunction", "cached"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)


class CachedFunction(Protocol[_P, _R_co]):
    """A function wrapped by :func:`cached`: call it, invalidate a result, or clear all."""

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R_co:
        """Return the cached result, calling the function on a miss."""
        ...

    def invalidate(self, *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Drop the result cached for these arguments."""
        ...

    def cache_clear(self) -> None:
        """Drop every result of this function (other users of the cache keep theirs)."""
        ...


def _args_key(*args: Hashable, **kwargs: Hashable) -> Hashable:
    return (args, tuple(sorted(kwargs.items())) if kwargs else ())


def cached(
    cache: NamedCache,
    *,
    ttl: float | None = None,
    key: Callable[..., Hashable] | None = None,
) -> Callable[[Callable[_P, _R]], CachedFunction[_P, _R]]:
    """Cache a sync or async function's results in ``cache``.

    Concurrent calls with the same arguments share one call of the function
    (``get_or_set`` for sync functions, ``aget_or_set`` for coroutine
    functions). The wrapper keeps the function's name, docstring and
    sync/async nature.

    The default key is the function's identity plus the arguments, so
    ``f(1)`` and ``f(x=1)`` are different keys and every argument must be
    hashable. Keys are never logged or shown in statistics, but they keep a
    reference to the arguments: pass ``key=`` to leave out a secret (an API
    key) or a large object.

    On a cache with a shared tier (``CacheManager(shared=backend)``) the
    function is known there by ``fn.__module__ + "." + fn.__qualname__``,
    the same in every process: two functions of one module with the same
    qualified name (closures made by one factory) share their shared
    entries, and the arguments must be str, int, bytes, bool, None or tuples
    of those for a result to be shared (others stay in the local tier).

    Args:
        cache: Where the results go; several functions may share it.
        ttl: Seconds a result stays fresh; ``None`` uses the cache's ``ttl``.
        key: Called with the function's arguments to build the key.

    Returns:
        A decorator producing a :class:`CachedFunction`.

    Raises:
        ConfigurationError: ``cache`` is not a :class:`NamedCache`, ``ttl``
            is not a finite number of seconds ``>= 0``, or ``key`` (or the
            decorated object) is not callable.
    """
    _validate.instance("cache", cache, NamedCache, "a NamedCache")
    if ttl is not None:
        ttl = _validate.duration("ttl", ttl)
    make_key = _args_key if key is None else _validate.function("key", key)

    def decorate(fn: Callable[_P, _R]) -> CachedFunction[_P, _R]:
        _validate.function("fn", fn)
        tag = FunctionTag(f"{fn.__module__}.{fn.__qualname__}")

        def cache_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            return (tag, make_key(*args, **kwargs))

        def is_ours(cache_key: Hashable) -> bool:
            return isinstance(cache_key, tuple) and len(cache_key) == 2 and cache_key[0] is tag

        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await cache.aget_or_set(
                    cache_key(args, kwargs), lambda: fn(*args, **kwargs), ttl
                )

        else:

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return cache.get_or_set(cache_key(args, kwargs), lambda: fn(*args, **kwargs), ttl)

        def invalidate(*args: Any, **kwargs: Any) -> None:
            cache.delete(cache_key(args, kwargs))

        def cache_clear() -> None:
            cache.delete_matching(is_ours)

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return cast(CachedFunction[_P, _R], wrapper)

    return decorate
