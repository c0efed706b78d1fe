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
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._runtime import Clock, current_loop, spawn_detached

from .flight import MISSING, THREADS, Flight, SingleFlight
from .store import Store, approx_size

__all__ = ["DEFAULT_MAXSIZE", "DEFAULT_TTL", "CacheStats", "NamedCache", "clock_argument"]

_T = TypeVar("_T")

DEFAULT_TTL = 300.0
DEFAULT_MAXSIZE = 10_000


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


def _window(arg: str, value: float | None) -> float:
    # None (no window) is the common case, on the hit path: answered without a call.
    return 0.0 if value is None else _validate.duration(arg, value)


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
            deleted or cleared meanwhile counts until it ends).
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
            :class:`seerrperf.testing.FakeClock` in tests.
        timer: Deprecated name of ``clock``.

    Raises:
        ConfigurationError: ``name`` is not a non-empty printable string,
            ``ttl`` is not a finite number of seconds ``>= 0`` (at most ten
            years), ``maxsize`` is not an integer ``>= 1``, ``clock`` is not
            callable, or both ``clock`` and ``timer`` are given.
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Clock = time.monotonic,
        timer: Clock | None = None,
    ) -> None:
        self._name = _validate.name("name", name)
        self._ttl = _validate.duration("ttl", ttl)
        self._maxsize = _validate.count("maxsize", maxsize, minimum=1)
        self._clock = clock_argument(clock, timer, stacklevel=2)
        self._lock = threading.Lock()
        self._store = Store(self._maxsize, self._clock)
        self._lookup = self._store.__getitem__  # bound once: cheaper on the hit path
        self._flights = SingleFlight(
            self._name, self._lock, self._store, self._clock, self._recount
        )
        self._tasks: set[asyncio.Task[None]] = set()  # strong refs to asyncio loads
        self._hits = self._misses = self._stale_hits = 0

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
            if entry.keep_until == entry.fresh_until or self._clock() < entry.fresh_until:
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
            ConfigurationError: ``ttl`` is not a finite number of seconds ``>= 0``.
        """
        ttl = self._entry_ttl(ttl)
        with self._lock:
            self._flights.forget(key)
            self._store.put(key, value, ttl)

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; a load running for it will not store its result.

        Args:
            key: A hashable key; absent keys are ignored.
        """
        with self._lock:
            self._flights.forget(key)
            self._store.discard(key)

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
            self._flights.forget_where(predicate)
            self._store.discard_where(predicate)

    def clear(self) -> None:
        """Remove every entry; running loads will not store their results."""
        with self._lock:
            self._flights.forget_all()
            self._store.clear()

    def __contains__(self, key: object) -> bool:
        """Return whether a fresh entry exists for ``key`` (counts no lookup)."""
        with self._lock:
            entry = self._store.peek(key)
            return entry is not None and self._clock() < entry.fresh_until

    def __len__(self) -> int:
        """Return the number of entries held, fresh or kept for a stale window."""
        with self._lock:
            return len(self._store)

    def stats(self, *, sizes: bool = True) -> CacheStats:
        """Return a snapshot of the counters and approximate memory use.

        Args:
            sizes: Compute ``key_bytes`` and ``value_bytes``. They are computed
                here, outside the lock and never on the hit path, but take time
                proportional to the cached data (hundreds of milliseconds for
                thousands of large JSON documents); ``False`` skips them and
                reports 0, for frequent polling.

        Raises:
            ConfigurationError: ``sizes`` is not ``True`` or ``False``.
        """
        _validate.flag("sizes", sizes)
        flights = self._flights
        with self._lock:
            entries = self._store.snapshot() if sizes else []
            keys = len(entries) if sizes else len(self._store)
            hits, misses, stale_hits = self._hits, self._misses, self._stale_hits
            loads, coalesced = flights.loads, flights.coalesced
            load_errors, loading = flights.load_errors, flights.running
            evictions = self._store.evictions
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
            key_bytes=sum(approx_size(key) for key, _ in entries),
            value_bytes=sum(approx_size(entry.value) for _, entry in entries),
            loading=loading,
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
    ) -> _T:
        """Return the fresh value for ``key``, calling ``loader`` on a miss.

        Threads missing the same key at the same time share one ``loader``
        call: the first runs it, the others wait for its result or exception.
        An exception is raised to every waiter and nothing is cached.

        The stale windows mean what they mean for :meth:`aget_or_set`. A
        stale-while-revalidate refresh runs on a daemon thread of its own
        (in a copy of the caller's ``contextvars`` context), so the thread
        that found the stale entry never waits for it.

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

        Returns:
            The cached, stale or loaded value.

        Raises:
            ConfigurationError: ``ttl`` or a window is not a finite number of
                seconds ``>= 0``, ``loader`` is not callable (checked on a
                miss), or ``loader`` returned an awaitable (use
                :meth:`aget_or_set`).
            CacheLoadAbortedError: The shared loader run was interrupted by a
                ``BaseException`` in the thread running it.
            Exception: Whatever ``loader`` raised, outside the stale-if-error window.
        """
        ttl = self._entry_ttl(ttl)
        swr, sie = self._windows(stale_while_revalidate, stale_if_error)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return cast(_T, value)
        _validate.function("loader", loader)
        value, flight, leader = self._flights.begin(key, THREADS, ttl, swr, threading.Event)
        if value is not MISSING:
            if leader:  # a stale hit that starts the key's one refresh
                assert flight is not None
                self._start_refresh(flight, loader)
            return cast(_T, value)
        assert flight is not None
        if leader:
            return self._load(flight, loader, sie)
        flight.done.wait()
        return cast(_T, self._flights.outcome(flight, sie))

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
            ConfigurationError: ``ttl`` or a window is not a finite number of
                seconds ``>= 0``, or ``loader`` is not callable (checked on a
                miss).
            CacheLoadAbortedError: The shared load was cancelled (its event
                loop is shutting down) before it finished.
            Exception: Whatever ``loader`` raised, outside the stale-if-error window.
        """
        ttl = self._entry_ttl(ttl)
        swr, sie = self._windows(stale_while_revalidate, stale_if_error)
        value = self.get(key, MISSING)
        if value is not MISSING:
            return cast(_T, value)
        _validate.function("loader", loader)
        value, flight, leader = self._flights.begin(key, current_loop(), ttl, swr, anyio.Event)
        if leader:
            assert flight is not None
            self._spawn(flight, loader)
        if value is not MISSING:
            return cast(_T, value)
        assert flight is not None
        await flight.done.wait()
        return cast(_T, self._flights.outcome(flight, sie))

    # -- how each path counts, runs and starts a load -------------------------

    def _entry_ttl(self, ttl: float | None) -> float:
        return self._ttl if ttl is None else _validate.duration("ttl", ttl)

    def _windows(
        self, stale_while_revalidate: float | None, stale_if_error: float | None
    ) -> tuple[float, float]:
        """Check both stale windows and keep entries long enough for them."""
        swr = _window("stale_while_revalidate", stale_while_revalidate)
        sie = _window("stale_if_error", stale_if_error)
        if max(swr, sie) > self._store.stale_window:
            with self._lock:
                self._store.keep_stale_for(max(swr, sie))
        return swr, sie

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
        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._refresh, flight, loader),
            name=f"seerrperf-cache-refresh {self._name}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException as exc:  # no thread to be had: the caller still gets its stale value
            self._flights.fail(flight, exc)
            if not isinstance(exc, Exception):
                raise

    async def _aload(
        self, flight: Flight[anyio.Event], loader: Callable[[], Awaitable[Any]]
    ) -> None:
        try:
            value = await loader()
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
