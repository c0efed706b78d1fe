"""The public face of a cache: :class:`NamedCache` and its :class:`CacheStats`.

A cache is three parts behind one lock: the bounded storage
(:mod:`.store`), the single-flight state machine with the stale rules
(:mod:`.flight`), and this face, which counts lookups and runs loaders. The
sync path runs the loader in the calling thread while the others wait on a
``threading.Event``; the async path runs it as a detached task that no caller
owns (:func:`seerrperf._runtime.spawn_detached`) while every caller, the first
included, waits on an ``anyio.Event``. Cancelling a caller therefore never
cancels the shared load, and a stale-while-revalidate refresh needs no task
group from the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import anyio

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._runtime import Clock, at_fork, current_loop, spawn_detached

from .flight import MISSING, THREADS, Flight, SingleFlight
from .store import Store, measure

if TYPE_CHECKING:
    from seerrperf._redis.backend import Subscription
    from seerrperf._redis.tier import Invalidation, Lease, SharedLoad, SharedTier

__all__ = [
    "DEFAULT_LOAD_TIMEOUT",
    "DEFAULT_MAXSIZE",
    "DEFAULT_TTL",
    "CacheStats",
    "NamedCache",
    "clock_argument",
]

_T = TypeVar("_T")

logger = logging.getLogger("seerrperf.cache")

DEFAULT_TTL = 300.0
DEFAULT_MAXSIZE = 10_000
_MAX_SECONDS = _validate.MAX_SECONDS

FORK_LOCK_WAIT = 1.0
"""Seconds a fork waits for each cache's lock (held only for microseconds normally)."""

DEFAULT_LOAD_TIMEOUT = 30.0
"""Seconds a shared load may take: the seed's query timeout, and gunicorn's worker timeout.

A request that waited this long for one upstream answer has usually been
given up by its client, its proxy or its worker manager already; anything
longer only keeps the key blocked.
"""


class FunctionTag:
    """Marks one ``@cached`` function's keys; unique even for same-named closures.

    In the shared tier only its :attr:`name` counts (``module.qualname``,
    the same in every process): see :func:`shareable_key`.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<cached {self.name}>"


def shareable_key(key: Hashable) -> Hashable:
    """The key the shared tier sees for a local ``key``: a ``@cached`` tag becomes its name."""
    if type(key) is tuple and len(key) == 2 and type(key[0]) is FunctionTag:
        return ("@cached", key[0].name, key[1])
    return key


def clock_argument(clock: Clock, timer: Clock | None, *, stacklevel: int) -> Clock:
    """Return the clock to use, given ``clock=`` and the deprecated ``timer=``.

    Args:
        clock: The ``clock=`` argument.
        timer: The ``timer=`` argument, ``None`` when not given.
        stacklevel: As the calling function would pass it to ``warnings.warn``
            (2: its own caller).

    Raises:
        ConfigurationError: Both are given, or the clock is not callable.
    """
    if timer is not None:
        if clock is not time.monotonic:
            raise ConfigurationError(
                "clock and timer must not both be given (timer= is the deprecated name of clock=)"
            )
        warnings.warn(
            "timer= is deprecated and will be removed in the next release; pass clock= instead",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )
        clock = timer
    return _validate.function("clock", clock)


def _load_timeout(value: object) -> float:
    return _validate.duration("load_timeout", value, allow_zero=False)


_UNCHECKED: Final = object()


def _quick_seconds(value: object) -> bool:
    """Whether ``value`` is an ``int`` or ``float`` in ``[0, MAX_SECONDS]`` (NaN is not)."""
    return (type(value) is float or type(value) is int) and 0 <= value <= _MAX_SECONDS


def _or(value: float | None, default: float) -> float:
    """A checked argument as seconds, or ``default`` for ``None``."""
    return default if value is None else float(value)


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
        loading: Loader runs in progress now (a run whose key was set,
            deleted or cleared meanwhile counts until it ends, and so does a
            sync run past its ``load_timeout`` until its loader returns).
        load_timeouts: Loads whose callers stopped waiting at the
            ``load_timeout`` (also counted in ``load_errors``).
        loads_rejected: Loads and refreshes not started because
            ``max_loading`` runs were in progress.
        shared_hits: Lookups answered by the shared tier (Redis) after a
            local miss; also counted in ``hits`` or ``stale_hits``. Always 0
            without a shared tier.
        local_only: Keys or values kept out of the shared tier (a key with
            no canonical encoding, a value the serializer refused); always 0
            without a shared tier.
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
    loading: int = 0
    load_timeouts: int = 0
    loads_rejected: int = 0
    shared_hits: int = 0
    local_only: int = 0

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
            "loading": self.loading,
            "load_timeouts": self.load_timeouts,
            "loads_rejected": self.loads_rejected,
            "shared_hits": self.shared_hits,
            "local_only": self.local_only,
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
        clock: Monotonic clock returning seconds; pass a
            :class:`seerrperf.testing.FakeClock` in tests. It decides
            freshness, stale windows and refresh backoff; a reading that is
            not a finite number raises :class:`ConfigurationError`.
        timer: Deprecated name of ``clock``.
        load_timeout: Seconds a shared load may take before its callers get
            :class:`CacheLoadTimeout` and the key is free for a new load
            (real time, whatever ``clock`` is); each call may pass its own.
        max_loading: Most loader runs in progress at once (distinct keys,
            refreshes included); ``None`` means ``maxsize``. A load beyond it
            fails at once with :class:`CacheOverloadedError`.
        shared: A shared tier beneath this cache's own
            (:meth:`RedisBackend.tier`, usually given by
            ``CacheManager(shared=backend)``): a local miss asks it, a load
            runs once for the whole fleet, and ``set``, ``delete``,
            ``delete_matching`` and ``clear`` reach every process. A local
            hit still costs no round trip. ``None``: this process only.

    Raises:
        ConfigurationError: ``name`` is not a non-empty printable string,
            ``ttl`` is not a finite number of seconds ``>= 0`` (at most ten
            years), ``load_timeout`` not one ``> 0``, ``maxsize`` or
            ``max_loading`` is not an integer ``>= 1``, ``clock`` is not
            callable, both ``clock`` and ``timer`` are given, or ``shared``
            is not a :class:`SharedTier`.
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Clock = time.monotonic,
        timer: Clock | None = None,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
        max_loading: int | None = None,
        shared: SharedTier | None = None,
    ) -> None:
        self._name = _validate.name("name", name)
        self._ttl = _validate.duration("ttl", ttl)
        self._maxsize = _validate.count("maxsize", maxsize, minimum=1)
        self._clock = clock_argument(clock, timer, stacklevel=2)
        self._load_timeout = _load_timeout(load_timeout)
        self._max_loading = (
            self._maxsize
            if max_loading is None
            else _validate.count("max_loading", max_loading, minimum=1)
        )
        self._lock = threading.Lock()
        self._store = Store(self._maxsize, self._clock)
        # The arguments of the last valid loading call (see _check_call); none yet.
        self._checked: tuple[object, ...] = (_UNCHECKED,) * 4
        self._find = self._store.find  # bound once: cheaper on the hit path
        self._touch = self._store.touch
        self._flights = SingleFlight(
            self._name, self._lock, self._store, self._max_loading, self._recount
        )
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs to asyncio loads
        self._held_for_fork = False
        at_fork(
            self,
            before=NamedCache._before_fork,
            after_in_parent=NamedCache._after_fork_in_parent,
            after_in_child=NamedCache._after_fork_in_child,
        )
        self._hits = self._misses = self._stale_hits = 0
        # The shared tier, when there is one (every use is behind `_tier is not None`).
        self._tier: SharedTier | None = None
        self._subscription: Subscription | None = None
        self._digests: dict[str, Hashable] = {}  # digest -> local key, for invalidations
        self._epoch = 0  # moves on with every change: a shared read begun before is not kept
        self._shared_hits = self._local_only = 0
        if shared is not None:
            self._attach(shared)

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

    @property
    def load_timeout(self) -> float:
        """Default seconds a shared load may take before its callers stop waiting."""
        return self._load_timeout

    @property
    def max_loading(self) -> int:
        """Most loader runs in progress at once."""
        return self._max_loading

    @property
    def shared(self) -> SharedTier | None:
        """The shared tier beneath this cache, or ``None``."""
        return self._tier

    def _attach(self, shared: SharedTier) -> None:
        """Put ``shared`` beneath this cache (its first resync drops what is held locally)."""
        from seerrperf._redis.tier import SharedTier

        tier = _validate.instance(
            "shared", shared, SharedTier, "a SharedTier (RedisBackend.tier(name))"
        )
        self.close()
        self._subscription = tier.subscribe(self._on_invalidation)
        self._tier = tier

    def close(self) -> None:
        """Detach the shared tier: stop receiving invalidations; the local tier works on.

        Without a shared tier this does nothing. Idempotent.
        """
        subscription, self._subscription = self._subscription, None
        self._tier = None
        if subscription is not None:
            subscription.close()

    # -- plain access -------------------------------------------------------

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the fresh value stored under ``key``, or ``default``.

        Args:
            key: A hashable key.
            default: Returned when no fresh entry exists.

        Returns:
            The cached value (which may be ``None`` or falsy), or ``default``.
        """
        # The hit path, kept to C calls: one dict lookup, one clock read, one LRU
        # move, and acquire()/release(), which cost less than `with lock:`.
        lock = self._lock
        lock.acquire()
        try:
            entry = self._find(key)
            if entry is not None and self._clock() < entry.fresh_until:
                self._touch(key)
                self._hits += 1
                return entry.value
            self._misses += 1
            self._store.now()  # a clock reading NaN makes every lookup miss: refuse it loudly
        except TypeError:
            self._store.now()  # a clock reading that is not a number is named as such...
            raise  # ...otherwise the key was unhashable
        finally:
            lock.release()
        # A local miss asks the shared tier (one round trip), except from the
        # loading paths (default MISSING), which ask it through their load.
        if self._tier is None or default is MISSING:
            return default
        return self._shared_get(key, default)

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``.

        A load already running for ``key`` still answers its callers but no
        longer stores its result: the explicit ``set`` wins. With a shared
        tier the value is stored there too (one round trip) and every other
        process drops its copy; a value the serializer refuses stays local
        (counted in ``local_only``) and the shared entry is deleted.

        Args:
            key: A hashable key.
            value: Any value, ``None`` included.
            ttl: Seconds the entry stays fresh; ``None`` uses the cache's
                ``ttl``; ``0`` stores nothing and drops any entry for ``key``.

        Raises:
            ConfigurationError: ``ttl`` is not a finite number of seconds ``>= 0``.
        """
        shared, ttl = self._set_local(key, value, ttl)
        if shared is not None:
            assert self._tier is not None
            self._count_set(
                self._tier.set(shared, value, ttl, stale_window=self._store.stale_window)
            )

    async def aset(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """The async twin of :meth:`set`: awaits the shared tier instead of blocking on it."""
        shared, ttl = self._set_local(key, value, ttl)
        if shared is not None:
            assert self._tier is not None
            tier = self._tier
            self._count_set(
                await tier.aset(shared, value, ttl, stale_window=self._store.stale_window)
            )

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; a load running for it will not store its result.

        With a shared tier the key is deleted there too (one round trip), in
        every process.

        Args:
            key: A hashable key; absent keys are ignored.
        """
        shared = self._delete_local(key)
        if shared is not None:
            assert self._tier is not None
            self._tier.delete(shared)

    async def adelete(self, key: Hashable) -> None:
        """The async twin of :meth:`delete`."""
        shared = self._delete_local(key)
        if shared is not None:
            assert self._tier is not None
            await self._tier.adelete(shared)

    def delete_matching(self, predicate: Callable[[Hashable], bool]) -> None:
        """Remove every key for which ``predicate(key)`` is true, like :meth:`delete` on each.

        Args:
            predicate: Called with each key held or being loaded, under the
                cache's lock: keep it quick and do not use the cache in it.

        Raises:
            ConfigurationError: ``predicate`` is not callable.
        """
        _validate.function("predicate", predicate)
        with self._lock:
            self._epoch += 1
            if self._tier is None:
                self._flights.forget_where(predicate)
                self._store.discard_where(predicate)
                return
            candidates = dict.fromkeys(self._flights.keys())
            candidates.update(dict.fromkeys(key for key, _ in self._store.snapshot()))
            matched = [key for key in candidates if predicate(key)]
            for key in matched:
                self._flights.forget(key)
                self._store.discard(key)
        # The shared tier: the keys this process knows (one round trip per 256).
        tier = self._tier
        shared = [sk for sk in map(shareable_key, matched) if tier.digest(sk) is not None]
        if shared:
            tier.delete_many(shared)

    def clear(self) -> None:
        """Remove every entry; running loads will not store their results.

        With a shared tier, the cache is cleared there too (one round trip),
        in every process.
        """
        self._clear_local()
        if self._tier is not None:
            self._tier.clear()

    async def aclear(self) -> None:
        """The async twin of :meth:`clear`."""
        self._clear_local()
        if self._tier is not None:
            await self._tier.aclear()

    def __contains__(self, key: object) -> bool:
        """Return whether a fresh entry exists for ``key`` (counts no lookup)."""
        with self._lock:
            entry = self._find(key)
            return entry is not None and self._clock() < entry.fresh_until

    def __len__(self) -> int:
        """Return the number of entries held, fresh or kept for a stale window."""
        with self._lock:
            self._store.expire()
            return len(self._store)

    def stats(self, *, sizes: bool | Literal["exact"] = True) -> CacheStats:
        """Return a snapshot of the counters and approximate memory use, in O(1).

        Args:
            sizes: ``True``: ``key_bytes`` and ``value_bytes`` as kept since
                each entry was stored (measured once, at store time; O(1)
                here). ``"exact"``: measured again now by walking every entry
                (outside the lock, in time proportional to the cached data:
                for values mutated after they were stored). ``False``: both
                reported as 0, as before.

        Raises:
            ConfigurationError: ``sizes`` is not ``True``, ``False`` or ``"exact"``.
        """
        if not isinstance(sizes, bool) and sizes != "exact":
            raise ConfigurationError(
                f"sizes must be True, False or 'exact', got {_validate.shown(sizes)}"
            )
        flights = self._flights
        store = self._store
        with self._lock:
            store.expire()  # amortised O(1): each entry expires once
            keys = len(store)
            key_bytes, value_bytes = store.key_bytes, store.value_bytes
            entries = store.snapshot() if sizes == "exact" else None
            hits, misses, stale_hits = self._hits, self._misses, self._stale_hits
            loads, coalesced = flights.loads, flights.coalesced
            load_errors, loading = flights.load_errors, flights.running
            load_timeouts, rejected = flights.load_timeouts, flights.rejected
            evictions = store.evictions
            shared_hits, local_only = self._shared_hits, self._local_only
        if entries is not None:
            key_bytes, value_bytes = store.exact_sizes(entries)
        elif not sizes:
            key_bytes = value_bytes = 0
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
            key_bytes=key_bytes,
            value_bytes=value_bytes,
            loading=loading,
            load_timeouts=load_timeouts,
            loads_rejected=rejected,
            shared_hits=shared_hits,
            local_only=local_only,
        )

    # -- loading ------------------------------------------------------------

    def get_or_set(
        self,
        key: Hashable,
        loader: Callable[[], _T],
        ttl: float | None = None,
        *,
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
        load_timeout: float | None = None,
    ) -> _T:
        """Return the fresh value for ``key``, calling ``loader`` on a miss.

        Threads missing the same key at the same time share one ``loader``
        call: the first runs it, the others wait for its result or exception.
        An exception is raised to every waiter and nothing is cached.

        The stale windows mean what they mean for :meth:`aget_or_set`. A
        stale-while-revalidate refresh runs on a daemon thread of its own
        (in a copy of the caller's ``contextvars`` context), so the thread
        that found the stale entry never waits for it.

        The loader runs in the thread of the first caller, which waits for it
        however long it takes (a thread cannot be stopped from outside). The
        other callers wait at most until the load's ``load_timeout``: then
        they get :class:`CacheLoadTimeout` (or the stale value inside the
        stale-if-error window), the key is free for a new load, and the late
        result is returned to its own thread only, never stored.

        Args:
            key: A hashable key.
            loader: Called without arguments to produce the value.
            ttl: Seconds the loaded value stays fresh; ``None`` uses the
                cache's ``ttl``; ``0`` shares the result without storing it.
            stale_while_revalidate: Seconds after expiry during which the stale
                value is returned at once while one background thread
                refreshes it. A failed refresh is logged and keeps the stale
                entry.
            stale_if_error: Seconds after expiry during which a failed load
                returns the stale value instead of raising.
            load_timeout: Seconds the load this call starts may take; ``None``
                uses the cache's. A call that joins a running load waits
                until that load's deadline.

        Returns:
            The cached, stale or loaded value.

        Raises:
            ConfigurationError: ``ttl`` or a window is not a finite number of
                seconds ``>= 0``, ``load_timeout`` not one ``> 0``, ``loader``
                is not callable (checked on a miss), ``loader`` returned an
                awaitable (use :meth:`aget_or_set`), or the cache's clock
                returned something that is not a finite number.
            CacheLoadTimeout: The shared load ran past its deadline.
            CacheOverloadedError: ``max_loading`` loads were in progress.
            CacheLoadAbortedError: The shared loader run was interrupted by a
                ``BaseException`` in the thread running it.
            Exception: Whatever ``loader`` raised, outside the stale-if-error window.
        """
        # One chain of `is` for the common call that passes none of them.
        if not (ttl is stale_while_revalidate is stale_if_error is load_timeout is None):
            self._check_call(ttl, stale_while_revalidate, stale_if_error, load_timeout)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return cast(_T, value)
        _validate.function("loader", loader)
        sie = _or(stale_if_error, 0.0)
        value, flight, leader = self._flights.begin(
            key,
            THREADS,
            _or(ttl, self._ttl),
            _or(stale_while_revalidate, 0.0),
            _or(load_timeout, self._load_timeout),
            threading.Event,
        )
        if leader and self._tier is not None:
            assert flight is not None
            loader = self._through_tier(flight, loader, _or(stale_while_revalidate, 0.0), sie)
        if value is not MISSING:
            if leader:  # a stale hit that starts the key's one refresh
                assert flight is not None
                self._start_refresh(flight, loader)
            return cast(_T, value)
        assert flight is not None
        if leader:
            return self._load(flight, loader, sie)
        if not flight.done.wait(flight.remaining()):
            self._flights.time_out(flight, run_ended=False)
        return cast(_T, self._flights.outcome(flight, sie))

    async def aget_or_set(
        self,
        key: Hashable,
        loader: Callable[[], Awaitable[_T]],
        ttl: float | None = None,
        *,
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
        load_timeout: float | None = None,
    ) -> _T:
        """Return the fresh value for ``key``, awaiting ``loader()`` on a miss.

        Tasks missing the same key on the same event loop share one loader
        run, which runs as a task of its own: cancelling any caller, the first
        included, never cancels it, and its result is stored even if every
        caller has gone. An exception reaches every waiter and is not cached.
        Works on asyncio and trio (through anyio or directly).

        An entry is kept after it expires for the longest stale window ever
        requested from this cache, so it can be served stale.

        A load still running at its ``load_timeout`` is cancelled; its callers
        get :class:`CacheLoadTimeout` (or the stale value inside the
        stale-if-error window) and the key is free for a new load.

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
            load_timeout: Seconds the load this call starts may take; ``None``
                uses the cache's. A call that joins a running load waits
                until that load's deadline.

        Returns:
            The cached, stale or loaded value.

        Raises:
            ConfigurationError: ``ttl`` or a window is not a finite number of
                seconds ``>= 0``, ``load_timeout`` not one ``> 0``, ``loader``
                is not callable (checked on a miss), or the cache's clock
                returned something that is not a finite number.
            CacheLoadTimeout: The shared load ran past its deadline.
            CacheOverloadedError: ``max_loading`` loads were in progress.
            CacheLoadAbortedError: The shared load was cancelled (its event
                loop is shutting down) before it finished.
            Exception: Whatever ``loader`` raised, outside the stale-if-error window.
        """
        # One chain of `is` for the common call that passes none of them.
        if not (ttl is stale_while_revalidate is stale_if_error is load_timeout is None):
            self._check_call(ttl, stale_while_revalidate, stale_if_error, load_timeout)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return cast(_T, value)
        _validate.function("loader", loader)
        sie = _or(stale_if_error, 0.0)
        value, flight, leader = self._flights.begin(
            key,
            current_loop(),
            _or(ttl, self._ttl),
            _or(stale_while_revalidate, 0.0),
            _or(load_timeout, self._load_timeout),
            anyio.Event,
        )
        if leader:
            assert flight is not None
            if self._tier is not None:
                loader = self._athrough_tier(flight, loader, _or(stale_while_revalidate, 0.0), sie)
            self._spawn(flight, loader)
        if value is not MISSING:
            return cast(_T, value)
        assert flight is not None
        # The load task cancels itself at the deadline; this bounds the wait
        # even for a loader that ignores cancellation.
        if not flight.done.is_set():
            with anyio.move_on_after(flight.remaining()):
                await flight.done.wait()
            if not flight.done.is_set():
                self._flights.time_out(flight, run_ended=False)
        return cast(_T, self._flights.outcome(flight, sie))

    # -- fork safety ------------------------------------------------------------

    def _before_fork(self) -> None:
        # No other thread is then inside a critical section while memory is
        # copied, so the child's copy of the entries is consistent. Bounded: a
        # lock held longer is left alone, and the child gets a new one anyway.
        self._held_for_fork = self._lock.acquire(timeout=FORK_LOCK_WAIT)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        # The entries are valid copies and stay. The lock (maybe held by a
        # thread that does not exist here), the loads in flight (their threads
        # and tasks stayed in the parent) and their waiters start afresh, so
        # no caller in the child joins a load that will never end.
        if not self._held_for_fork:  # a thread may have been mid-update: rebuild the sums
            self._store.repair()
        self._held_for_fork = False
        self._lock = threading.Lock()
        self._flights.reset(self._lock)
        self._tasks = set()

    # -- how each path counts, runs and starts a load -------------------------

    def _entry_ttl(self, ttl: float | None) -> float:
        return self._ttl if ttl is None else _validate.duration("ttl", ttl)

    def _check_call(
        self,
        ttl: object,
        stale_while_revalidate: object,
        stale_if_error: object,
        load_timeout: object,
    ) -> None:
        """Check a loading call's arguments, and keep entries for its stale windows.

        On every call, hits included: the arguments of the last valid call
        (the same objects, as a TMDB client's plans pass them) cost four
        identity tests; a valid number costs two comparisons; anything else
        goes to :mod:`seerrperf._validate` for its message.
        """
        last = self._checked
        if (
            ttl is last[0]
            and stale_while_revalidate is last[1]
            and stale_if_error is last[2]
            and load_timeout is last[3]
        ):
            return  # identity, not equality: True == 1, yet True is no duration
        if ttl is not None and not _quick_seconds(ttl):
            _validate.duration("ttl", ttl)
        window = 0.0
        for arg, value in (
            ("stale_while_revalidate", stale_while_revalidate),
            ("stale_if_error", stale_if_error),
        ):
            if value is not None:
                if not _quick_seconds(value):
                    _validate.duration(arg, value)
                window = max(window, float(value))  # type: ignore[arg-type]
        if load_timeout is not None and not (_quick_seconds(load_timeout) and load_timeout):
            _load_timeout(load_timeout)
        if window > self._store.stale_window:
            with self._lock:
                self._store.keep_stale_for(window)
        self._checked = (ttl, stale_while_revalidate, stale_if_error, load_timeout)

    def _recount(self, stale: bool) -> None:
        """Count a lookup that missed as answered after all. Called with the lock held."""
        self._misses -= 1
        if stale:
            self._stale_hits += 1
        else:
            self._hits += 1

    def _load(
        self, flight: Flight[threading.Event], loader: Callable[[], _T], stale_if_error: float
    ) -> _T:
        """Run ``flight``'s load in this thread; answer as a waiter would (stale-if-error too)."""
        try:
            value = loader()
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # never awaited: silence "coroutine was never awaited"
                raise ConfigurationError(
                    "get_or_set() got an async loader; use aget_or_set() for coroutine functions"
                )
        except Exception as exc:
            self._flights.fail(flight, exc)
            if flight.error is not exc:  # answered at its deadline: this thread gets its own error
                raise
            return cast(_T, self._flights.outcome(flight, stale_if_error))
        except BaseException as exc:  # an interrupt: re-raised here, the waiters are told
            self._flights.fail(flight, exc)
            raise
        self._flights.settle(flight, value)
        return value

    def _refresh(self, flight: Flight[threading.Event], loader: Callable[[], Any]) -> None:
        """A refresh thread's body: a failure is logged by the state machine, never raised."""
        with contextlib.suppress(Exception):  # fail() logged it; nobody waits for a refresh
            self._load(flight, loader, 0.0)

    def _start_refresh(self, flight: Flight[threading.Event], loader: Callable[[], Any]) -> None:
        """Run ``flight``'s refresh on a daemon thread, in a copy of the caller's context."""
        try:
            self._start_thread(self._refresh, flight, loader)
        except BaseException as exc:  # no thread to be had: the caller still gets its stale value
            self._flights.fail(flight, exc)
            if not isinstance(exc, Exception):
                raise

    def _start_thread(self, target: Callable[..., None], *args: Any) -> None:
        """Run ``target(*args)`` on a daemon thread, in a copy of the caller's context."""
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(target, *args),
            name=f"seerrperf-cache-refresh {self._name}",
            daemon=True,
        ).start()

    async def _aload(
        self, flight: Flight[anyio.Event], loader: Callable[[], Awaitable[Any]]
    ) -> None:
        try:
            with anyio.move_on_after(flight.remaining()) as deadline:
                value = await loader()
            if deadline.cancelled_caught:
                self._flights.time_out(flight, run_ended=True)
                return
        except Exception as exc:  # handed to the waiters; a detached task must not raise it
            self._flights.fail(flight, exc)
            return
        except BaseException as exc:  # cancelled: the event loop is shutting down
            self._flights.fail(flight, exc)
            raise
        self._flights.settle(flight, value)

    def _spawn(self, flight: Flight[anyio.Event], loader: Callable[[], Awaitable[Any]]) -> None:
        """Start ``flight``'s load as a task that no caller owns."""
        try:
            spawn_detached(
                flight.owner,
                functools.partial(self._aload, flight, loader),
                self._tasks,
                functools.partial(self._flights.abandon, flight),
            )
        except BaseException as exc:
            self._flights.fail(flight, exc)
            raise

    # -- the shared tier (only with one) ---------------------------------------

    def _share(self, key: Hashable) -> tuple[Hashable, str] | None:
        """``key`` as the shared tier knows it, and its digest; ``None`` (counted) if it cannot.

        Called without the lock, only with a shared tier.
        """
        assert self._tier is not None
        shared = shareable_key(key)
        digest = self._tier.digest(shared)
        if digest is None:
            with self._lock:
                self._local_only += 1
            return None
        return shared, digest

    def _remember(self, digest: str, key: Hashable) -> None:
        """Know ``key`` by ``digest`` for invalidations. Called with the lock held."""
        digests = self._digests
        digests[digest] = key
        if len(digests) > 2 * self._maxsize + 64:  # forget keys neither held nor loading
            find, flights = self._find, self._flights
            self._digests = {
                d: k for d, k in digests.items() if find(k) is not None or k in flights
            }

    def _shared_get(self, key: Hashable, default: Any) -> Any:
        """:meth:`get` after a local miss: one shared lookup; a fresh value is kept locally."""
        assert self._tier is not None
        shared = self._share(key)
        if shared is None:
            return default
        epoch = self._epoch
        found = self._tier.lookup(shared[0])
        if found.state != "fresh":
            return default
        ttl = min(self._ttl, found.ttl)
        sizes = measure(key, found.value) if ttl > 0 else (0, 0)
        with self._lock:
            self._recount(False)
            self._shared_hits += 1
            if ttl > 0 and self._epoch == epoch:  # nothing changed while it was read
                self._remember(shared[1], key)
                self._store.put(key, found.value, ttl, sizes)
        return found.value

    def _set_local(
        self, key: Hashable, value: Any, ttl: float | None
    ) -> tuple[Hashable | None, float]:
        """``set``'s local part; returns the shared key to write (``None``: none) and the ttl."""
        ttl = self._entry_ttl(ttl)
        sizes = measure(key, value) if ttl else (0, 0)  # outside the lock
        shared = None if self._tier is None else self._share(key)
        with self._lock:
            self._epoch += 1
            self._flights.forget(key)
            self._store.put(key, value, ttl, sizes)
            if shared is not None:
                self._remember(shared[1], key)
        return (None if shared is None else shared[0]), ttl

    def _count_set(self, outcome: str) -> None:
        if outcome == "local_only":
            with self._lock:
                self._local_only += 1

    def _delete_local(self, key: Hashable) -> Hashable | None:
        """``delete``'s local part; returns the shared key to delete, if any."""
        with self._lock:
            self._epoch += 1
            self._flights.forget(key)
            self._store.discard(key)
        if self._tier is None:
            return None
        shared = shareable_key(key)
        return shared if self._tier.digest(shared) is not None else None

    def _clear_local(self) -> None:
        with self._lock:
            self._epoch += 1
            self._flights.forget_all()
            self._store.clear()
            self._digests.clear()

    def _on_invalidation(self, invalidation: Invalidation) -> None:
        """Another process changed the shared tier (the backend's subscriber thread).

        ``keys``: drop those keys; ``clear``, ``flush``, ``resync``: drop
        everything. The loads running for a dropped key are forgotten too, so
        a shared read that was in flight is not stored afterwards.
        """
        with self._lock:
            self._epoch += 1
            if invalidation.kind == "keys":
                for digest in invalidation.digests:
                    key = self._digests.pop(digest, MISSING)
                    if key is not MISSING:
                        self._flights.forget(key)
                        self._store.discard(key)
            else:
                self._flights.forget_all()
                self._store.clear()
                self._digests.clear()

    def _begin_shared(self, flight: Flight[Any]) -> Hashable | None:
        """The shared key of ``flight``'s load (remembered), or ``None`` to load locally."""
        if not flight.ttl:  # shared with its callers, stored nowhere
            return None
        shared = self._share(flight.key)
        if shared is None:
            return None
        with self._lock:
            self._remember(shared[1], flight.key)
        return shared[0]

    def _answered(self, flight: Flight[Any], loaded: SharedLoad) -> None:
        """Account for a shared load's answer; keep it locally no longer than the tier does."""
        with self._lock:
            if loaded.source in ("shared", "stale"):  # no loader ran in this process
                self._flights.loads -= 1
                self._shared_hits += 1
                if not flight.refresh:  # its caller counted a miss
                    self._recount(loaded.source == "stale")
            if loaded.ttl < flight.ttl:
                flight.ttl = max(0.0, loaded.ttl)  # settle() then stores it that long, or not

    def _landed(self, key: Hashable, value: Any, ttl: float, outcome: str, epoch: int) -> None:
        """A background shared refresh stored ``value``: keep it locally too, unless changed."""
        if outcome == "lost" or not ttl:
            return
        sizes = measure(key, value)
        with self._lock:
            if self._epoch == epoch:
                self._store.put(key, value, ttl, sizes)

    def _through_tier(
        self, flight: Flight[threading.Event], loader: Callable[[], _T], swr: float, sie: float
    ) -> Callable[[], Any]:
        """The leader's sync loader with a shared tier: ``tier.get_or_load``."""
        tier = self._tier
        shared = self._begin_shared(flight)
        if tier is None or shared is None:
            return loader

        def load() -> Any:
            ttl = flight.ttl
            loaded = tier.get_or_load(
                shared,
                loader,
                ttl=ttl,
                stale_while_revalidate=swr,
                stale_if_error=sie,
                stale_window=self._store.stale_window,
            )
            self._answered(flight, loaded)
            if loaded.refresh is not None:
                with contextlib.suppress(Exception):  # no thread: the lease expires by itself
                    self._start_thread(
                        self._shared_refresh, tier, shared, flight.key, ttl, loaded.refresh, loader
                    )
            return loaded.value

        return load

    def _shared_refresh(
        self,
        tier: SharedTier,
        shared: Hashable,
        key: Hashable,
        ttl: float,
        lease: Lease,
        loader: Callable[[], Any],
    ) -> None:
        """A refresh thread's body for the fleet's one refresh this process won."""
        epoch, got = self._epoch, []

        def load() -> Any:
            got.append(loader())
            return got[0]

        try:
            outcome = tier.refresh(lease, load, ttl=ttl, stale_window=self._store.stale_window)
        except Exception as exc:  # nobody waits for a refresh; the stale entry stays
            _log_refresh_failure(self._name, exc)
            return
        self._landed(key, got[0], ttl, outcome, epoch)

    def _athrough_tier(
        self,
        flight: Flight[anyio.Event],
        loader: Callable[[], Awaitable[Any]],
        swr: float,
        sie: float,
    ) -> Callable[[], Awaitable[Any]]:
        """The leader's async loader with a shared tier: ``tier.aget_or_load``."""
        tier = self._tier
        shared = self._begin_shared(flight)
        if tier is None or shared is None:
            return loader

        async def load() -> Any:
            ttl = flight.ttl
            loaded = await tier.aget_or_load(
                shared,
                loader,
                ttl=ttl,
                stale_while_revalidate=swr,
                stale_if_error=sie,
                stale_window=self._store.stale_window,
            )
            self._answered(flight, loaded)
            if loaded.refresh is not None:
                spawn_detached(
                    flight.owner,
                    functools.partial(
                        self._ashared_refresh, tier, shared, flight.key, ttl, loaded.refresh, loader
                    ),
                    self._tasks,
                    _nothing,
                )
            return loaded.value

        return load

    async def _ashared_refresh(
        self,
        tier: SharedTier,
        shared: Hashable,
        key: Hashable,
        ttl: float,
        lease: Lease,
        loader: Callable[[], Awaitable[Any]],
    ) -> None:
        """The async twin of :meth:`_shared_refresh` (a detached task)."""
        epoch, got = self._epoch, []

        async def load() -> Any:
            got.append(await loader())
            return got[0]

        try:
            outcome = await tier.arefresh(
                lease, load, ttl=ttl, stale_window=self._store.stale_window
            )
        except Exception as exc:
            _log_refresh_failure(self._name, exc)
            return
        self._landed(key, got[0], ttl, outcome, epoch)


def _nothing() -> None:
    pass


def _log_refresh_failure(name: str, exc: Exception) -> None:
    # The type only: a loader's message may carry a URL with an API key.
    logger.warning(
        "background shared refresh in cache %r failed (%s); the stale entry stays",
        name,
        type(exc).__name__,
    )
