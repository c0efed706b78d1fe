"""A Django cache backend on a :class:`~seerrperf.NamedCache`: ``SeerrperfCache``.

::

    CACHES = {
        "default": {
            "BACKEND": "seerrperf.django.cache.SeerrperfCache",
            "LOCATION": "pages",
            "TIMEOUT": 300,
            "OPTIONS": {"MAX_ENTRIES": 10_000, "STALE_WHILE_REVALIDATE": 30},
        }
    }

Django's whole cache API, sync and ``a``-prefixed async, on one bounded,
thread-safe, in-process cache per ``LOCATION`` and process. What it adds to
Django's ``LocMemCache``: ``get_or_set`` is single-flight (threads missing a
key together call the loader once; so do the tasks of one event loop in
``aget_or_set``), with stale-while-revalidate and stale-if-error windows and
a load timeout; eviction is least-recently-used one entry at a time, with
statistics (:meth:`SeerrperfCache.stats`). ``add``, ``delete``, ``touch`` and
``incr`` are atomic, as in ``LocMemCache``.

Django makes a cache object per thread, and per task in async code
(``caches[alias]`` is an ``asgiref`` ``Local``); every one of them for a
``LOCATION`` uses the same :class:`NamedCache`, held
in a registry of this module for the life of the process. A forked child
(gunicorn ``--preload``) keeps its copy of the entries and gets fresh locks.

See ``docs/django-cache.md``. Needs Django (``pip install "seerrperf[django]"``).
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import anyio
import anyio.to_thread

from seerrperf import _validate
from seerrperf._cache.flight import MISSING
from seerrperf._cache.named import DEFAULT_LOAD_TIMEOUT, CacheStats, NamedCache
from seerrperf._errors import ConfigurationError
from seerrperf._redis.codec import PickleSerializer
from seerrperf._runtime import Clock, at_fork
from seerrperf._web.config import REDIS_SCHEMES

from . import _cache_ops

if TYPE_CHECKING:
    from seerrperf._redis.backend import RedisBackend
from ._cache_base import DEFAULT_TIMEOUT, BaseCache, on_caches_changed

__all__ = ["DEFAULT_MAX_ENTRIES", "FOREVER", "OPTIONS", "SeerrperfCache"]

DEFAULT_MAX_ENTRIES: Final = 300
"""Entries held when ``OPTIONS`` has no ``MAX_ENTRIES``: Django's own default."""

FOREVER: Final = float(_validate.MAX_SECONDS)
"""The time to live of ``timeout=None`` ("forever"): ten years, NamedCache's longest."""

OPTIONS: Final = frozenset(
    {
        "CLOCK",
        "LOAD_TIMEOUT",
        "MAX_ENTRIES",
        "MAX_LOADING",
        "NAME",
        "PICKLE",
        "SHARED",
        "STALE_IF_ERROR",
        "STALE_WHILE_REVALIDATE",
    }
)
"""The keys ``CACHES[alias]["OPTIONS"]`` may hold; any other is refused."""

_R = TypeVar("_R")

_ABSENT: Final = object()
"""A miss. Not NamedCache's MISSING, which tells it to skip the shared tier."""

_PICKLE: Final = PickleSerializer()
"""Values are pickled as the shared Redis tier pickles them; in-process, only
bytes this process pickled itself are ever read back."""


def _identity(value: Any) -> Any:
    return value


def _ttl(arg: str, timeout: object) -> float:
    """Django's timeout as NamedCache seconds: ``None`` forever, ``<= 0`` not stored.

    A timeout longer than :data:`FOREVER` is forever too.

    Raises:
        ConfigurationError: ``timeout`` is not ``None`` nor a number of seconds.
    """
    if timeout is None:
        return FOREVER
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError(
            f"{arg} must be a number of seconds or None, got {type(timeout).__name__}"
        )
    if isinstance(timeout, int):  # compared before float(): a huge int does not overflow
        return 0.0 if timeout <= 0 else float(min(timeout, _validate.MAX_SECONDS))
    if math.isnan(timeout):
        raise ConfigurationError(f"{arg} must be a number of seconds or None, got nan")
    return 0.0 if timeout <= 0 else min(timeout, FOREVER)


@dataclass(frozen=True, slots=True)
class _Spec:
    """What makes one process-wide NamedCache; backends sharing a LOCATION must agree on it."""

    name: str
    maxsize: int
    pickle: bool
    load_timeout: float
    max_loading: int | None
    clock: Clock
    shared: str | None = field(default=None, repr=False)  # a Redis URL: may hold a password

    def differences(self, other: _Spec) -> list[str]:
        shown = {
            "name": "NAME",
            "maxsize": "MAX_ENTRIES",
            "pickle": "PICKLE",
            "load_timeout": "LOAD_TIMEOUT",
            "max_loading": "MAX_LOADING",
            "clock": "CLOCK",
        }
        found = [
            f"{option}={_validate.shown(getattr(other, field))} "
            f"(it has {_validate.shown(getattr(self, field))})"
            for field, option in shown.items()
            if getattr(self, field) is not getattr(other, field)
            and getattr(self, field) != getattr(other, field)
        ]
        if self.shared != other.shared:
            found.append("another SHARED (the URLs are not shown: they may hold a password)")
        return found


def _redis_backend(url: str) -> RedisBackend:
    """The shared tier's backend for ``url``: one per LOCATION and process (it survives forks).

    Values are pickled in Redis as Django's own Redis backend pickles them:
    the server must be private to the application (see ``docs/scale-out.md``).
    """
    from seerrperf._redis.backend import RedisBackend

    return RedisBackend.from_url(url, serializer="pickle")


class _Registry:
    """The process's NamedCaches, by LOCATION: one per LOCATION whatever the thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caches: dict[str, tuple[_Spec, NamedCache, RedisBackend | None]] = {}
        at_fork(self, after_in_child=_Registry._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The caches keep their entries (each NamedCache renews its own lock);
        # a registry lock held by a parent thread at the fork must not stay held.
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Start afresh: the next backend made for a LOCATION gets a new NamedCache.

        For Django's ``override_settings(CACHES=...)``: the new settings may
        give a LOCATION other options. Backend objects made before keep the
        cache they had.
        """
        with self._lock:
            dropped = list(self._caches.values())
            self._caches.clear()
            _CONFIGS.clear()
        for _, cache, backend in dropped:
            if backend is not None:  # its subscriber thread and connections go too
                cache.close()
                backend.close()

    def get(self, location: str, spec: _Spec) -> NamedCache:
        with self._lock:
            found = self._caches.get(location)
            if found is None:
                backend = None if spec.shared is None else _redis_backend(spec.shared)
                cache = NamedCache(
                    spec.name,
                    maxsize=spec.maxsize,
                    clock=spec.clock,
                    load_timeout=spec.load_timeout,
                    max_loading=spec.max_loading,
                    shared=None if backend is None else backend.tier(spec.name),
                )
                self._caches[location] = (spec, cache, backend)
                return cache
        held, cache, _ = found
        differences = held.differences(spec)
        if differences:
            raise ConfigurationError(
                f"CACHES LOCATION {location!r} is already a SeerrperfCache with other OPTIONS; "
                f"got {', '.join(differences)}. Backends with one LOCATION share one cache: "
                "give them the same OPTIONS, or each its own LOCATION"
            )
        return cache


_REGISTRY: Final = _Registry()
on_caches_changed(_REGISTRY.forget)


@dataclass(frozen=True, slots=True)
class _Config:
    """One alias's settings, checked, and the process's NamedCache for its LOCATION."""

    spec: _Spec
    timeout: float | None
    default_ttl: float
    swr: float | None  # None for 0: the common call then passes no window (NamedCache's fast path)
    sie: float | None
    cache: NamedCache


_CONFIGS: dict[Hashable, _Config] = {}
"""Checked settings by their signature: Django makes a backend per thread, and per
task in async code (``caches`` is an ``asgiref`` ``Local``), each from a fresh
copy of the same settings; they are checked once."""


def _signature(location: str, params: Mapping[str, Any]) -> Hashable | None:
    """The settings as a hashable value (types included: ``True`` is not ``1``), or None."""
    try:
        options = params.get("OPTIONS", {})
        signature = (
            location,
            tuple(sorted((str(k), type(v), v) for k, v in params.items() if k != "OPTIONS")),
            tuple(sorted((str(k), type(v), v) for k, v in options.items())),
        )
        hash(signature)
    except Exception:  # an unhashable or unorderable setting: checked every time
        return None
    return signature


def _configured(location: str, params: Mapping[str, Any]) -> _Config:
    signature = _signature(location, params)
    config = None if signature is None else _CONFIGS.get(signature)
    if config is None:
        config = _configure(location, params)
        if signature is not None:
            _CONFIGS[signature] = config
    return config


def _configure(location: str, params: Mapping[str, Any]) -> _Config:
    """Check one alias's settings and find (or make) the NamedCache of its LOCATION.

    Raises:
        ConfigurationError: A setting is invalid or unknown, or the LOCATION
            is already a cache with other options.
    """
    if not isinstance(location, str):
        raise ConfigurationError(f"CACHES LOCATION must be a string, got {type(location).__name__}")
    given: object = params.get("OPTIONS", {})
    if not isinstance(given, Mapping):
        raise ConfigurationError(f"CACHES OPTIONS must be a dict, got {type(given).__name__}")
    options = cast(Mapping[str, Any], given)
    unknown = sorted(str(key) for key in options if key not in OPTIONS)
    if unknown:
        hint = (
            " (CULL_FREQUENCY: this cache evicts the least recently used entry, one at a time)"
            if "CULL_FREQUENCY" in unknown
            else ""
        )
        raise ConfigurationError(
            f"CACHES OPTIONS has unknown keys {', '.join(unknown)}{hint}; "
            f"known: {', '.join(sorted(OPTIONS))}"
        )
    shared = options.get("SHARED")
    if shared is not None:
        _validate.secret("CACHES OPTIONS SHARED", shared)  # never echoed: may hold a password
        if str(shared).partition("://")[0].lower() not in REDIS_SCHEMES:
            raise ConfigurationError(
                "CACHES OPTIONS SHARED must be a Redis URL (redis://, rediss:// or unix://); "
                "the value is not shown: it may hold a password"
            )
    timeout = params.get("timeout", params.get("TIMEOUT", 300))
    default_ttl = _ttl("CACHES TIMEOUT", timeout)
    if timeout is not None and timeout < 0:
        raise ConfigurationError(f"CACHES TIMEOUT must be >= 0 or None, got {timeout!r}")
    max_loading = options.get("MAX_LOADING")
    spec = _Spec(
        name=_validate.name("CACHES OPTIONS NAME", options.get("NAME", location or "django")),
        maxsize=_validate.count(
            "CACHES OPTIONS MAX_ENTRIES", options.get("MAX_ENTRIES", DEFAULT_MAX_ENTRIES), minimum=1
        ),
        pickle=_validate.flag("CACHES OPTIONS PICKLE", options.get("PICKLE", True)),
        load_timeout=_validate.duration(
            "CACHES OPTIONS LOAD_TIMEOUT",
            options.get("LOAD_TIMEOUT", DEFAULT_LOAD_TIMEOUT),
            allow_zero=False,
        ),
        max_loading=None
        if max_loading is None
        else _validate.count("CACHES OPTIONS MAX_LOADING", max_loading, minimum=1),
        clock=_validate.function(
            "CACHES OPTIONS CLOCK",
            options.get("CLOCK", time.monotonic),
            "a clock like time.monotonic",
        ),
        shared=shared,
    )
    swr = _validate.duration(
        "CACHES OPTIONS STALE_WHILE_REVALIDATE", options.get("STALE_WHILE_REVALIDATE", 0)
    )
    sie = _validate.duration("CACHES OPTIONS STALE_IF_ERROR", options.get("STALE_IF_ERROR", 0))
    return _Config(
        spec=spec,
        timeout=timeout,
        default_ttl=default_ttl,
        swr=swr or None,
        sie=sie or None,
        cache=_REGISTRY.get(location, spec),
    )


class SeerrperfCache(BaseCache):
    """Django's cache API on a process-wide :class:`~seerrperf.NamedCache`.

    Configured in ``CACHES`` like any backend: ``LOCATION`` names the cache
    (one per process, shared by every thread and every alias with that
    ``LOCATION``), ``TIMEOUT`` is the default timeout (``None`` forever, ``0``
    nothing stored; 300 s when absent), ``KEY_PREFIX``, ``VERSION`` and
    ``KEY_FUNCTION`` work as in Django, and keys Django warns about for
    memcached are warned about here too (``CacheKeyWarning``).

    ``OPTIONS``:

    - ``MAX_ENTRIES``: most entries held (default 300, as Django's); the
      least recently used goes first, one at a time.
    - ``NAME``: the cache's name in statistics (default ``LOCATION``, or
      ``"django"`` when that is empty).
    - ``PICKLE``: ``True`` (default) stores a pickled copy of each value and
      returns a fresh copy on every read, like Django's ``LocMemCache``:
      mutating a returned object never changes the cache. ``False`` stores
      the objects themselves: faster, and a value that cannot be pickled can
      be cached, but the objects must then be treated as read-only.
    - ``STALE_WHILE_REVALIDATE`` and ``STALE_IF_ERROR``: seconds after expiry
      during which ``get_or_set`` serves the stale value while one thread
      refreshes it, or instead of raising when the load fails (default 0).
    - ``LOAD_TIMEOUT``: seconds a shared ``get_or_set`` load may take before
      the threads waiting for it get :class:`~seerrperf.CacheLoadTimeout`
      (default 30).
    - ``MAX_LOADING``: most loads at once (default ``MAX_ENTRIES``).
    - ``CLOCK``: a monotonic clock (default ``time.monotonic``); pass a
      :class:`seerrperf.testing.FakeClock` in tests.
    - ``SHARED``: a Redis URL: the shared tier beneath the cache (values
      pickled in Redis; the URL is never shown). ``add``, ``incr`` and
      ``touch`` are atomic within a process, not across the fleet.

    Args:
        location: ``CACHES[alias]["LOCATION"]``.
        params: The rest of ``CACHES[alias]``.

    Raises:
        ConfigurationError: A setting or option is invalid or unknown, or
            the ``LOCATION`` is already a cache with other options.
    """

    def __init__(self, location: str, params: Mapping[str, Any]) -> None:
        config = _configured(location, params)
        super().__init__(params)
        self.default_timeout: float | None = config.timeout
        self._location = location
        self._default_ttl = config.default_ttl
        self._swr = config.swr
        self._sie = config.sie
        pickled = config.spec.pickle
        self._encode: Callable[[Any], Any] = _PICKLE.dumps if pickled else _identity
        self._decode: Callable[[Any], Any] = _PICKLE.loads if pickled else _identity
        self._named = config.cache
        self._shared = config.spec.shared is not None

    def __repr__(self) -> str:
        return (
            f"<SeerrperfCache LOCATION={self._location!r} name={self._named.name!r} "
            f"maxsize={self._named.maxsize}>"
        )

    @property
    def named_cache(self) -> NamedCache:
        """The process-wide :class:`~seerrperf.NamedCache` behind this ``LOCATION``.

        With ``PICKLE`` on, it holds pickled bytes under Django's made keys
        (``make_key``): read it for statistics, write through this backend.
        """
        return self._named

    def stats(self, *, sizes: bool | Literal["exact"] = True) -> CacheStats:
        """Return the statistics of the cache behind this ``LOCATION``.

        Every ``get``, ``get_many`` key and ``get_or_set`` counts once as a
        hit, a stale hit or a miss; ``add``, ``has_key``, ``touch`` and
        ``incr`` count no lookup. With ``PICKLE`` on, ``value_bytes`` is the
        size of the pickles.

        Args:
            sizes: As for :meth:`seerrperf.NamedCache.stats`.
        """
        return self._named.stats(sizes=sizes)

    def _pull(self, key: Any) -> Any:
        """Read ``key`` through the shared tier (the cache keeps it locally); it or ``_ABSENT``."""
        return self._named.get(key, _ABSENT)

    def _ttl(self, timeout: Any) -> float:
        if timeout is DEFAULT_TIMEOUT:
            return self._default_ttl
        return _ttl("timeout", timeout)

    # -- Django's API: sync -------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """Store ``value`` unless ``key`` holds a fresh value; atomic. Return whether stored."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        stored = self._encode(value)
        if self._shared and self._pull(key) is not _ABSENT:
            return False  # another process's value, fresh in the shared tier
        added = _cache_ops.add(self._named, key, stored, ttl)
        if added and self._shared:
            self._named.set(key, stored, ttl)  # to the shared tier, and out of other processes
        return added

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """Return the value of ``key`` (``None`` when ``None`` was stored), or ``default``."""
        key = self.make_and_validate_key(key, version=version)
        value = self._named.get(key, _ABSENT)
        if value is _ABSENT:
            return default
        return self._decode(value)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """Store ``value`` under ``key``; a timeout of 0 (or less) removes the key instead."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        self._named.set(key, self._encode(value), ttl)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """Give ``key`` a new timeout; return whether it held a fresh value."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        found = self._pull(key) if self._shared else _ABSENT
        stored = _cache_ops.touch(self._named, key, ttl)
        if stored is MISSING:
            if found is _ABSENT:
                return False
            stored = found  # read from the shared tier but not kept locally (a race)
        if self._shared:
            self._named.set(key, stored, ttl)
        return True

    def delete(self, key: Any, version: Any = None) -> bool:
        """Remove ``key``; return whether it held a fresh value."""
        key = self.make_and_validate_key(key, version=version)
        present = _cache_ops.delete(self._named, key)
        if self._shared:
            self._named.delete(key)  # in the shared tier too, and in every process
        return present

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """Return ``{key: value}`` for the keys that hold a fresh value."""
        found: dict[Any, Any] = {}
        for key in keys:
            value = self._named.get(self.make_and_validate_key(key, version=version), _ABSENT)
            if value is not _ABSENT:
                found[key] = self._decode(value)
        return found

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        """Return the value of ``key``; on a miss, store ``default`` (or what it returns).

        Single-flight: threads missing ``key`` at the same time call a
        callable ``default`` once and all get its value (each its own copy
        with ``PICKLE``); an exception reaches every one of them and nothing
        is stored. Inside the ``STALE_WHILE_REVALIDATE`` window the stale
        value is returned at once while one background thread reloads it.

        Raises:
            ConfigurationError: ``default`` returned an awaitable (use
                :meth:`aget_or_set`).
            CacheLoadTimeout: The shared load ran past ``LOAD_TIMEOUT``.
            Exception: Whatever ``default()`` raised.
        """
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        encode = self._encode
        make: Callable[[], Any] = default if callable(default) else lambda: default

        def load() -> Any:
            value = make()
            if inspect.isawaitable(value):  # refused before pickle would hide why
                if inspect.iscoroutine(value):
                    value.close()  # never awaited: no "coroutine was never awaited" warning
                raise ConfigurationError(
                    "get_or_set() got an async default; use aget_or_set() in async code"
                )
            return encode(value)

        value = self._named.get_or_set(
            key, load, ttl, stale_while_revalidate=self._swr, stale_if_error=self._sie
        )
        return self._decode(value)

    def has_key(self, key: Any, version: Any = None) -> bool:
        """Return whether ``key`` holds a fresh value (counts no lookup)."""
        key = self.make_and_validate_key(key, version=version)
        if self._shared:  # the shared tier may hold it: a lookup, counted as one
            return self._named.get(key, _ABSENT) is not _ABSENT
        return key in self._named

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """Add ``delta`` to the value of ``key`` atomically; the expiry stays.

        Raises:
            ValueError: ``key`` holds no fresh value.
            TypeError: The value cannot be added to (``None``, a string).
        """
        key = self.make_and_validate_key(key, version=version)
        found = self._pull(key) if self._shared else _ABSENT
        try:
            value, stored, ttl = _cache_ops.incr(
                self._named, key, delta, self._decode, self._encode
            )
        except ValueError:
            if found is _ABSENT:
                raise
            # Read from the shared tier but not kept locally (a race): its expiry is unknown.
            value = self._decode(found) + delta
            stored, ttl = self._encode(value), self._default_ttl
        if self._shared:
            self._named.set(key, stored, ttl)
        return value

    def decr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """Subtract ``delta`` from the value of ``key``, as :meth:`incr` adds."""
        return self.incr(key, -delta, version=version)

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """Store every pair of ``data``; return the keys not stored (always none)."""
        ttl = self._ttl(timeout)
        for key, value in data.items():
            self._named.set(
                self.make_and_validate_key(key, version=version), self._encode(value), ttl
            )
        return []

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """Remove every key of ``keys``."""
        for key in keys:
            self.delete(key, version)

    def clear(self) -> None:
        """Remove every entry of this ``LOCATION`` (every alias and prefix sharing it)."""
        self._named.clear()

    # -- Django's API: async ------------------------------------------------
    # In-process and non-blocking (the lock is held for microseconds, no I/O):
    # run on the event loop itself, not through sync_to_async's thread hop.
    # With SHARED, set, delete and clear await the shared tier's async twins;
    # the steps NamedCache has no async twin for (a lookup that may ask Redis,
    # add, touch, incr) run in a worker thread, so the loop never waits on Redis.

    async def _run(self, method: Callable[..., _R], *args: Any) -> _R:
        if not self._shared:
            return method(*args)
        return await anyio.to_thread.run_sync(functools.partial(method, *args))

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        """:meth:`add`, on the event loop."""
        return await self._run(self.add, key, value, timeout, version)

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        """:meth:`get`, on the event loop."""
        return await self._run(self.get, key, default, version)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        """:meth:`set`, on the event loop."""
        key = self.make_and_validate_key(key, version=version)
        await self._named.aset(key, self._encode(value), self._ttl(timeout))

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        """:meth:`touch`, on the event loop."""
        return await self._run(self.touch, key, timeout, version)

    async def adelete(self, key: Any, version: Any = None) -> bool:
        """:meth:`delete`, on the event loop."""
        key = self.make_and_validate_key(key, version=version)
        present = _cache_ops.delete(self._named, key)
        if self._shared:
            await self._named.adelete(key)
        return present

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        """:meth:`get_many`, on the event loop."""
        return await self._run(self.get_many, list(keys), version)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        """:meth:`get_or_set` for async code: single-flight across the tasks of one event loop.

        ``default`` may be a value, a function, or an async function (or one
        returning an awaitable). The load runs as a task no caller owns
        (:meth:`seerrperf.NamedCache.aget_or_set`): a caller cancelled while
        it waits does not cancel it. Threads and other event loops load on
        their own.

        Raises:
            CacheLoadTimeout: The shared load ran past ``LOAD_TIMEOUT``.
            Exception: Whatever ``default()`` raised.
        """
        key = self.make_and_validate_key(key, version=version)
        ttl = self._ttl(timeout)
        encode = self._encode

        async def load() -> Any:
            value = default() if callable(default) else default
            if inspect.isawaitable(value):
                value = await value
            return encode(value)

        value = await self._named.aget_or_set(
            key, load, ttl, stale_while_revalidate=self._swr, stale_if_error=self._sie
        )
        return self._decode(value)

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        """:meth:`has_key`, on the event loop."""
        return await self._run(self.has_key, key, version)

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """:meth:`incr`, on the event loop."""
        return await self._run(self.incr, key, delta, version)

    async def adecr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        """:meth:`decr`, on the event loop."""
        return await self._run(self.incr, key, -delta, version)

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        """:meth:`set_many`, on the event loop."""
        for key, value in data.items():
            await self.aset(key, value, timeout, version)
        return []

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        """:meth:`delete_many`, on the event loop."""
        for key in keys:
            await self.adelete(key, version)

    async def aclear(self) -> None:
        """:meth:`clear`, on the event loop."""
        await self._named.aclear()

    async def aincr_version(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """:meth:`incr_version`, on the event loop."""
        return await self._run(self.incr_version, key, delta, version)

    async def adecr_version(self, key: Any, delta: int = 1, version: Any = None) -> int:
        """:meth:`decr_version`, on the event loop."""
        return await self._run(self.incr_version, key, -delta, version)
