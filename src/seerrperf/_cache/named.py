"""Named, bounded TTL caches with statistics, single-flight loading and stale serving.

Storage is a ``cachetools.TLRUCache`` per cache, guarded by one lock. Each
entry records its own expiry (``fresh_until``) and how long it is kept after
that (``keep_until``), so a stale entry stays readable during the stale
windows; cachetools drops it at ``keep_until`` and evicts the least recently
used entry when ``maxsize`` is reached.

Async loads run as detached tasks that no caller owns (an asyncio task held in
a set, or a trio system task); every caller, the first included, waits on an
event. Cancelling a caller therefore never cancels the shared load, and a
stale-while-revalidate refresh needs no task group from the application.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import inspect
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, cast

import anyio
from cachetools import Cache, TLRUCache

from seerrperf._errors import CacheLoadAbortedError, ConfigurationError

__all__ = ["CacheManager", "CacheStats", "CachedFunction", "NamedCache", "cached"]

logger = logging.getLogger("seerrperf.cache")

_T = TypeVar("_T")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
_EventT = TypeVar("_EventT", threading.Event, anyio.Event)

DEFAULT_TTL = 300.0
DEFAULT_MAXSIZE = 10_000

# Seerr's node-cache instances and their stdTTL in seconds (server/lib/cache.ts).
_SEERR_TTLS: dict[str, float] = {
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


class _Missing(enum.Enum):
    MISSING = enum.auto()


# Private marker for "no value", so that None and other falsy values are cached.
_MISSING = _Missing.MISSING
# Flight owner for the sync API: all threads share one load per key.
_THREADS = object()


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _window(name: str, value: float | None) -> float:
    return 0.0 if value is None else _check_seconds(name, value)


def _check_maxsize(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"maxsize must be an integer >= 1, got {value!r}")
    return value


def _approx_size(obj: object) -> int:
    """``sys.getsizeof`` summed over ``obj`` and the builtin containers inside it."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return total


class _Entry:
    __slots__ = ("fresh_until", "keep_until", "value")

    def __init__(self, value: Any, fresh_until: float, keep_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.keep_until = keep_until


def _keep_until(_key: Hashable, entry: _Entry, _now: float) -> float:
    return entry.keep_until


if TYPE_CHECKING:
    _StoreBase = TLRUCache[Hashable, _Entry]
else:
    _StoreBase = TLRUCache


class _Store(_StoreBase):
    """A TLRUCache that reports LRU evictions and can be read without reordering."""

    def __init__(
        self, maxsize: int, timer: Callable[[], float], on_evict: Callable[[], None]
    ) -> None:
        super().__init__(maxsize, _keep_until, timer)
        self._on_evict = on_evict

    def popitem(self) -> tuple[Hashable, _Entry]:
        # cachetools calls popitem only to make room (expired entries go first).
        item = super().popitem()
        self._on_evict()
        return item

    def peek(self, key: Hashable) -> _Entry | None:
        """Return the live entry for ``key`` without touching the LRU order."""
        return Cache.__getitem__(self, key) if key in self else None

    def snapshot(self) -> list[tuple[Hashable, _Entry]]:
        """Return the live entries without touching the LRU order."""
        self.expire()
        return [(key, Cache.__getitem__(self, key)) for key in Cache.__iter__(self)]

    def discard(self, key: Hashable) -> None:
        try:
            del self[key]
        except KeyError:  # absent, or expired (cachetools removes it and raises)
            pass


class _Flight(Generic[_EventT]):
    """One loader run whose outcome every concurrent caller of a key shares."""

    __slots__ = ("done", "error", "key", "owner", "refresh", "traceback", "ttl", "value")

    def __init__(
        self, key: Hashable, owner: object, ttl: float, done: _EventT, *, refresh: bool
    ) -> None:
        self.key = key
        self.owner = owner  # _THREADS, or the event loop the load runs on
        self.ttl = ttl
        self.done: _EventT = done
        self.refresh = refresh
        self.value: Any = None
        self.error: Exception | None = None
        self.traceback: Any = None


def _current_loop() -> object:
    """Return the running event loop (asyncio) or trio token, identifying the loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        import trio  # anyio's only other backend; imported only when it is running

        return trio.lowlevel.current_trio_token()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of one cache's counters.

    Every lookup counts exactly once, as a hit, a stale hit or a miss.

    Attributes:
        name: The cache's name.
        hits: Lookups answered with a fresh entry.
        misses: Lookups that found no usable entry.
        stale_hits: Lookups answered with a stale entry (stale-while-revalidate,
            or stale-if-error after a failed load).
        loads: Loader runs started (misses that joined a running load and
            lookups answered from cache start none).
        coalesced: Misses that joined a load another caller had started
            (single-flight savings: each would have been an upstream call).
        load_errors: Loader runs that raised.
        evictions: Entries removed to stay within ``maxsize``.
        keys: Entries held now, fresh or kept for a stale window.
        maxsize: The bound on ``keys``.
        key_bytes: Approximate memory held by the keys (``sys.getsizeof``,
            summed through builtin containers).
        value_bytes: Approximate memory held by the values, likewise.
    """

    name: str
    hits: int
    misses: int
    stale_hits: int
    loads: int
    coalesced: int
    load_errors: int
    evictions: int
    keys: int
    maxsize: int
    key_bytes: int
    value_bytes: int

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache (fresh or stale); 0.0 before any."""
        lookups = self.hits + self.stale_hits + self.misses
        return (self.hits + self.stale_hits) / lookups if lookups else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, ``hit_rate`` included."""
        return {
            "name": self.name,
            "hits": self.hits,
            "misses": self.misses,
            "stale_hits": self.stale_hits,
            "loads": self.loads,
            "coalesced": self.coalesced,
            "load_errors": self.load_errors,
            "evictions": self.evictions,
            "keys": self.keys,
            "maxsize": self.maxsize,
            "hit_rate": self.hit_rate,
            "key_bytes": self.key_bytes,
            "value_bytes": self.value_bytes,
        }


class NamedCache:
    """A bounded, thread-safe TTL cache with single-flight loading.

    Values are stored as they are (not copied): treat them as read-only.
    ``None`` and other falsy values are cached like any other value.

    Args:
        name: The cache's name, as shown in statistics.
        ttl: Default time to live of an entry, in seconds.
        maxsize: Most entries held; the least recently used goes first.
        timer: Clock returning seconds; inject a fake one in tests.

    Raises:
        ConfigurationError: ``name`` is empty, ``ttl`` is negative or not a
            number, or ``maxsize`` is not a positive integer.
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        maxsize: int = DEFAULT_MAXSIZE,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        self._name = name
        self._ttl = _check_seconds("ttl", ttl)
        self._maxsize = _check_maxsize(maxsize)
        self._timer = timer
        self._lock = threading.Lock()
        self._reset_store()
        # key -> owner (_THREADS or an event loop) -> the load running for it.
        self._flights: dict[Hashable, dict[object, _Flight[Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs to asyncio loads
        self._stale_window = 0.0  # longest stale window requested so far
        self._hits = self._misses = self._stale_hits = 0
        self._loads = self._coalesced = self._load_errors = self._evictions = 0

    def __repr__(self) -> str:
        return f"<NamedCache {self._name!r} ttl={self._ttl:g} maxsize={self._maxsize}>"

    @property
    def name(self) -> str:
        """The cache's name."""
        return self._name

    @property
    def ttl(self) -> float:
        """Default time to live of an entry, in seconds."""
        return self._ttl

    @property
    def maxsize(self) -> int:
        """Most entries held at once."""
        return self._maxsize

    # -- plain access -------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the fresh value stored under ``key``, or ``default``.

        Args:
            key: A hashable key.
            default: Returned when no fresh entry exists.

        Returns:
            The cached value (which may be ``None`` or falsy), or ``default``.
        """
        # The hit path: acquire()/release() costs half of `with lock:` (no argument parsing).
        self._lock.acquire()
        try:
            try:
                entry = self._lookup(key)  # touches the LRU order
            except KeyError:
                self._misses += 1
                return default
            # When nothing is kept past expiry, cachetools has just checked freshness.
            if entry.keep_until == entry.fresh_until or self._timer() < entry.fresh_until:
                self._hits += 1
                return entry.value
            self._misses += 1
            return default
        finally:
            self._lock.release()

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``.

        A load already running for ``key`` still answers its callers but no
        longer stores its result: the explicit ``set`` wins.

        Args:
            key: A hashable key.
            value: Any value, ``None`` included.
            ttl: Seconds the entry stays fresh; ``None`` uses the cache's
                ``ttl``; ``0`` stores nothing and drops any entry for ``key``.

        Raises:
            ConfigurationError: ``ttl`` is negative or not a number.
        """
        ttl = self._entry_ttl(ttl)
        with self._lock:
            self._flights.pop(key, None)
            self._put(key, value, ttl)

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; a load running for it will not store its result.

        Args:
            key: A hashable key; absent keys are ignored.
        """
        with self._lock:
            self._flights.pop(key, None)
            self._store.discard(key)

    def clear(self) -> None:
        """Remove every entry; running loads will not store their results."""
        with self._lock:
            self._flights.clear()
            self._reset_store()

    def __contains__(self, key: object) -> bool:
        """Return whether a fresh entry exists for ``key`` (counts no lookup)."""
        with self._lock:
            entry = self._store.peek(key)
            return entry is not None and self._timer() < entry.fresh_until

    def __len__(self) -> int:
        """Return the number of entries held, fresh or kept for a stale window."""
        with self._lock:
            self._store.expire()
            return len(self._store)

    def stats(self, *, sizes: bool = True) -> CacheStats:
        """Return a snapshot of the counters and approximate memory use.

        Args:
            sizes: Compute ``key_bytes`` and ``value_bytes``. They are computed
                here, outside the lock and never on the hit path, but take time
                proportional to the cached data (hundreds of milliseconds for
                thousands of large JSON documents); ``False`` skips them and
                reports 0, for frequent polling.
        """
        with self._lock:
            entries = self._store.snapshot() if sizes else []
            if not sizes:
                self._store.expire()
            keys = len(entries) if sizes else len(self._store)
            hits, misses, stale_hits = self._hits, self._misses, self._stale_hits
            loads, coalesced = self._loads, self._coalesced
            load_errors, evictions = self._load_errors, self._evictions
        return CacheStats(
            name=self._name,
            hits=hits,
            misses=misses,
            stale_hits=stale_hits,
            loads=loads,
            coalesced=coalesced,
            load_errors=load_errors,
            evictions=evictions,
            keys=keys,
            maxsize=self._maxsize,
            key_bytes=sum(_approx_size(key) for key, _ in entries),
            value_bytes=sum(_approx_size(entry.value) for _, entry in entries),
        )

    # -- loading ------------------------------------------------------------

    def get_or_set(self, key: Hashable, loader: Callable[[], _T], ttl: float | None = None) -> _T:
        """Return the fresh value for ``key``, calling ``loader`` on a miss.

        Threads missing the same key at the same time share one ``loader``
        call: the first runs it, the others wait for its result or exception.
        An exception is raised to every waiter and nothing is cached.

        Args:
            key: A hashable key.
            loader: Called without arguments to produce the value.
            ttl: Seconds the loaded value stays fresh; ``None`` uses the
                cache's ``ttl``; ``0`` shares the result without storing it.

        Returns:
            The cached or loaded value.

        Raises:
            ConfigurationError: ``ttl`` is negative or not a number.
            CacheLoadAbortedError: The shared loader run was interrupted by a
                ``BaseException`` in the thread running it.
            Exception: Whatever ``loader`` raised.
        """
        ttl = self._entry_ttl(ttl)
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return cast(_T, value)
        with self._lock:
            value, flight, leader = self._begin(key, _THREADS, ttl, 0.0, threading.Event)
        if value is not _MISSING:
            return cast(_T, value)
        assert flight is not None
        if leader:
            return self._load(flight, loader)
        flight.done.wait()
        return cast(_T, self._outcome(flight, 0.0))

    async def aget_or_set(
        self,
        key: Hashable,
        loader: Callable[[], Awaitable[_T]],
        ttl: float | None = None,
        *,
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
    ) -> _T:
        """Return the fresh value for ``key``, awaiting ``loader()`` on a miss.

        Tasks missing the same key on the same event loop share one loader
        run, which runs as a task of its own: cancelling any caller, the first
        included, never cancels it, and its result is stored even if every
        caller has gone. An exception reaches every waiter and is not cached.
        Works on asyncio and trio (through anyio or directly).

        An entry is kept after it expires for the longest stale window ever
        requested from this cache, so it can be served stale.

        Args:
            key: A hashable key.
            loader: Called without arguments; its awaitable produces the value.
            ttl: Seconds the loaded value stays fresh; ``None`` uses the
                cache's ``ttl``; ``0`` shares the result without storing it.
            stale_while_revalidate: Seconds after expiry during which the stale
                value is returned at once while one background load refreshes
                it. A failed refresh is logged and keeps the stale entry.
            stale_if_error: Seconds after expiry during which a failed load
                returns the stale value instead of raising.

        Returns:
            The cached, stale or loaded value.

        Raises:
            ConfigurationError: ``ttl`` or a window is negative or not a number.
            CacheLoadAbortedError: The shared load was cancelled (its event
                loop is shutting down) before it finished.
            Exception: Whatever ``loader`` raised, outside the stale-if-error window.
        """
        ttl = self._entry_ttl(ttl)
        swr = _window("stale_while_revalidate", stale_while_revalidate)
        sie = _window("stale_if_error", stale_if_error)
        if max(swr, sie) > self._stale_window:
            with self._lock:
                self._stale_window = max(self._stale_window, swr, sie)
        value = self.get(key, _MISSING)
        if value is not _MISSING:
            return cast(_T, value)
        owner = _current_loop()
        with self._lock:
            value, flight, leader = self._begin(key, owner, ttl, swr, anyio.Event)
        if leader:
            assert flight is not None
            self._spawn(flight, loader)
        if value is not _MISSING:
            return cast(_T, value)
        assert flight is not None
        await flight.done.wait()
        return cast(_T, self._outcome(flight, sie))

    # -- internals shared by the sync and async paths -------------------------

    def _reset_store(self) -> None:
        self._store = _Store(self._maxsize, self._timer, self._count_eviction)
        self._lookup = self._store.__getitem__  # bound once: cheaper on the hit path

    def _count_eviction(self) -> None:
        self._evictions += 1  # called by the store, under self._lock

    def _entry_ttl(self, ttl: float | None) -> float:
        return self._ttl if ttl is None else _check_seconds("ttl", ttl)

    def _put(self, key: Hashable, value: Any, ttl: float) -> None:
        """Store or (``ttl == 0``) drop an entry. Call with the lock held."""
        if ttl == 0:
            self._store.discard(key)
            return
        fresh_until = self._timer() + ttl
        self._store[key] = _Entry(value, fresh_until, fresh_until + self._stale_window)

    def _begin(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        swr: float,
        new_event: Callable[[], _EventT],
    ) -> tuple[Any, _Flight[_EventT] | None, bool]:
        """Settle a lookup that ``get`` counted as a miss. Call with the lock held.

        Returns ``(value, flight, leader)``: a value other than ``_MISSING`` is
        the answer; ``leader`` means the caller must start ``flight``'s load
        (with a value too, that is a background refresh); otherwise the caller
        waits for ``flight``.
        """
        entry = self._store.peek(key)
        if entry is not None:
            now = self._timer()
            if now < entry.fresh_until:  # a load finished since get()
                self._misses -= 1
                self._hits += 1
                return entry.value, None, False
            if now < entry.fresh_until + swr:
                self._misses -= 1
                self._stale_hits += 1
                if key in self._flights:  # a load is already running: no second refresh
                    return entry.value, None, False
                return entry.value, self._new_flight(key, owner, ttl, new_event, True), True
        flight = self._flights.get(key, {}).get(owner)
        if flight is not None:
            self._coalesced += 1
            return _MISSING, flight, False
        return _MISSING, self._new_flight(key, owner, ttl, new_event, False), True

    def _new_flight(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        new_event: Callable[[], _EventT],
        refresh: bool,
    ) -> _Flight[_EventT]:
        flight = _Flight(key, owner, ttl, new_event(), refresh=refresh)
        self._flights.setdefault(key, {})[owner] = flight
        self._loads += 1
        return flight

    def _release(self, flight: _Flight[Any]) -> bool:
        """Unregister ``flight``; False if set/delete/clear already forgot it."""
        owners = self._flights.get(flight.key)
        if owners is None or owners.get(flight.owner) is not flight:
            return False
        del owners[flight.owner]
        if not owners:
            del self._flights[flight.key]
        return True

    def _settle(self, flight: _Flight[Any], value: Any) -> None:
        flight.value = value
        try:
            with self._lock:
                if self._release(flight):
                    self._put(flight.key, value, flight.ttl)
        except Exception as exc:  # a failing timer: the callers still get the value
            logger.warning(
                "cache %r could not store a loaded value (%s)", self._name, type(exc).__name__
            )
        finally:
            flight.done.set()

    def _fail(self, flight: _Flight[Any], exc: BaseException) -> None:
        if isinstance(exc, Exception):
            error = exc
        else:
            error = CacheLoadAbortedError(
                f"the shared load in cache {self._name!r} ended with {type(exc).__name__}"
            )
        with self._lock:
            self._load_errors += 1
            # False when set/delete/clear forgot the key meanwhile (the loader may
            # have done so itself, e.g. on a 404): then no stale entry stays.
            still_ours = self._release(flight)
        if flight.refresh and isinstance(exc, Exception):
            # The type only: a loader's message may carry a URL with an API key.
            logger.warning(
                "background refresh in cache %r failed (%s); %s",
                self._name,
                type(exc).__name__,
                "the stale entry stays" if still_ours else "the entry was removed",
            )
        flight.error = error
        flight.traceback = error.__traceback__
        flight.done.set()

    def _outcome(self, flight: _Flight[Any], stale_if_error: float) -> Any:
        """Return a waiter's answer: the loaded value, a stale one, or raise."""
        if flight.error is None:
            return flight.value
        if stale_if_error:
            with self._lock:
                entry = self._store.peek(flight.key)
                if entry is not None and self._timer() < entry.fresh_until + stale_if_error:
                    self._misses -= 1
                    self._stale_hits += 1
                    return entry.value
        # Like asyncio.Future: one exception object, its original traceback each time.
        raise flight.error.with_traceback(flight.traceback)

    def _load(self, flight: _Flight[threading.Event], loader: Callable[[], _T]) -> _T:
        try:
            value = loader()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # never awaited: silence "coroutine was never awaited"
                raise ConfigurationError(
                    "get_or_set() got an async loader; use aget_or_set() for coroutine functions"
                )
        except BaseException as exc:
            self._fail(flight, exc)
            raise
        self._settle(flight, value)
        return value

    async def _aload(
        self, flight: _Flight[anyio.Event], loader: Callable[[], Awaitable[Any]]
    ) -> None:
        try:
            value = await loader()
        except Exception as exc:  # handed to the waiters; a detached task must not raise it
            self._fail(flight, exc)
            return
        except BaseException as exc:  # cancelled: the event loop is shutting down
            self._fail(flight, exc)
            raise
        self._settle(flight, value)

    def _spawn(self, flight: _Flight[anyio.Event], loader: Callable[[], Awaitable[Any]]) -> None:
        """Start ``flight``'s load as a task that no caller owns."""
        run = functools.partial(self._aload, flight, loader)
        try:
            if isinstance(flight.owner, asyncio.AbstractEventLoop):
                task = flight.owner.create_task(run())
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._task_done, flight))
            else:
                import trio

                trio.lowlevel.spawn_system_task(run, context=contextvars.copy_context())
        except BaseException as exc:
            self._fail(flight, exc)
            raise

    def _task_done(self, flight: _Flight[anyio.Event], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not flight.done.is_set():  # cancelled before it started: free the waiters
            self._fail(flight, asyncio.CancelledError())

    def _discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        with self._lock:
            for key in [key for key, _ in self._store.snapshot() if predicate(key)]:
                self._store.discard(key)
            for key in [key for key in self._flights if predicate(key)]:
                del self._flights[key]


class CacheManager:
    """A registry of named caches, like Seerr's ``cacheManager``.

    Args:
        timer: Clock given to every cache it creates; inject a fake one in tests.
    """

    def __init__(self, *, timer: Callable[[], float] = time.monotonic) -> None:
        self._timer = timer
        self._lock = threading.Lock()
        self._caches: dict[str, NamedCache] = {}

    @classmethod
    def seerr(
        cls, *, maxsize: int = DEFAULT_MAXSIZE, timer: Callable[[], float] = time.monotonic
    ) -> CacheManager:
        """Return a manager holding Seerr's ten caches with Seerr's TTLs.

        The caches are tmdb, radarr, sonarr, rt, imdb, github, plexguid,
        plextv, plexwatchlist and tvdb. Unlike Seerr's, each is bounded.

        Args:
            maxsize: Bound of each cache.
            timer: Clock for the caches.

        Returns:
            A new manager.

        Raises:
            ConfigurationError: ``maxsize`` is not a positive integer.
        """
        manager = cls(timer=timer)
        for name, ttl in _SEERR_TTLS.items():
            manager.get_cache(name, ttl=ttl, maxsize=maxsize)
        return manager

    def get_cache(
        self, name: str, *, ttl: float | None = None, maxsize: int | None = None
    ) -> NamedCache:
        """Return the cache called ``name``, creating it on first use.

        Args:
            name: The cache's name.
            ttl: Default time to live in seconds (300 when the cache is
                created without one). Omit it to accept the existing cache's.
            maxsize: Bound on entries (10,000 when created without one).

        Returns:
            The same :class:`NamedCache` instance for every call with ``name``.

        Raises:
            ConfigurationError: An option is invalid, or ``name`` exists and an
                option given explicitly differs from its current value.
        """
        with self._lock:
            cache = self._caches.get(name)
            if cache is None:
                cache = NamedCache(
                    name,
                    ttl=DEFAULT_TTL if ttl is None else ttl,
                    maxsize=DEFAULT_MAXSIZE if maxsize is None else maxsize,
                    timer=self._timer,
                )
                self._caches[name] = cache
                return cache
        for option, given, current in (
            ("ttl", ttl, cache.ttl),
            ("maxsize", maxsize, cache.maxsize),
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
        with self._lock:
            caches = list(self._caches.values())
        return {cache.name: cache.stats() for cache in caches}

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
        """Empty every cache."""
        with self._lock:
            caches = list(self._caches.values())
        for cache in caches:
            cache.clear()


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


class _FunctionTag:
    """Marks one decorated function's keys; unique even for same-named closures."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<cached {self.name}>"


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

    Args:
        cache: Where the results go; several functions may share it.
        ttl: Seconds a result stays fresh; ``None`` uses the cache's ``ttl``.
        key: Called with the function's arguments to build the key.

    Returns:
        A decorator producing a :class:`CachedFunction`.

    Raises:
        ConfigurationError: ``ttl`` is negative or not a number.
    """
    if ttl is not None:
        _check_seconds("ttl", ttl)
    make_key = _args_key if key is None else key

    def decorate(fn: Callable[_P, _R]) -> CachedFunction[_P, _R]:
        tag = _FunctionTag(f"{fn.__module__}.{fn.__qualname__}")

        def cache_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            return (tag, make_key(*args, **kwargs))

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
            cache._discard_where(lambda k: isinstance(k, tuple) and len(k) == 2 and k[0] is tag)

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return cast(CachedFunction[_P, _R], wrapper)

    return decorate
