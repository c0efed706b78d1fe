"""The single-flight state machine: one loader run per key, shared by every caller that misses.

Pure logic, shared by both paths of a cache: the sync path (threads, which
wait on a ``threading.Event`` and run the loader themselves) and the async
path (tasks, which wait on an ``anyio.Event`` while the loader runs as a
detached task). The paths differ only in how they wait and how they start a
load; what a lookup answers, who loads, what is stored and what a waiter gets
is decided here:

- :meth:`SingleFlight.begin` settles a lookup that missed: a value that became
  fresh meanwhile, a stale value inside the stale-while-revalidate window
  (starting one background refresh), joining the load already running for the
  key and owner, or leading a new one.
- :meth:`SingleFlight.settle` and :meth:`SingleFlight.fail` end a load: store
  its value (unless a ``set``, ``delete`` or ``clear`` forgot the key
  meanwhile) or record its exception, and wake the waiters.
- :meth:`SingleFlight.outcome` gives a waiter its answer: the loaded value, a
  stale value inside the stale-if-error window, or the loader's exception.

Flights are kept per key and per owner: all threads share one owner, and each
event loop is an owner of its own (an event of one loop cannot be awaited
from another).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

import anyio

from seerrperf._errors import CacheLoadAbortedError
from seerrperf._runtime import Clock

from .store import Store

__all__ = ["MISSING", "THREADS", "Flight", "SingleFlight", "Start"]

logger = logging.getLogger("seerrperf.cache")

_EventT = TypeVar("_EventT", threading.Event, anyio.Event)


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING = _Missing.MISSING
"""Marks "no value", so that ``None`` and other falsy values are cached."""

THREADS = object()
"""The owner of sync flights: all threads share one load per key."""


class Flight(Generic[_EventT]):
    """One loader run whose outcome every concurrent caller of a key shares."""

    __slots__ = ("done", "error", "key", "owner", "refresh", "traceback", "ttl", "value")

    def __init__(
        self, key: Hashable, owner: object, ttl: float, done: _EventT, *, refresh: bool
    ) -> None:
        self.key = key
        self.owner = owner  # THREADS, or the event loop the load runs on
        self.ttl = ttl
        self.done: _EventT = done
        self.refresh = refresh  # a stale-while-revalidate refresh: nobody waits for it
        self.value: Any = None
        self.error: Exception | None = None
        self.traceback: Any = None


class Start(NamedTuple, Generic[_EventT]):
    """What :meth:`SingleFlight.begin` decided.

    ``value`` other than :data:`MISSING` is the answer. ``leader`` means the
    caller must start ``flight``'s load (with a value too, that is a
    background refresh); otherwise, without a value, the caller waits for
    ``flight``.
    """

    value: Any
    flight: Flight[_EventT] | None
    leader: bool


class SingleFlight:
    """The running loads of one cache, and the rules for answering around them.

    Shares the cache's lock and store; :meth:`begin`, :meth:`settle`,
    :meth:`fail` and :meth:`outcome` take the lock themselves, the ``forget``
    methods expect it held.

    Args:
        name: The cache's name, for messages and log lines.
        lock: The cache's lock.
        store: The cache's entries.
        clock: The cache's clock.
        recount: Called (with the lock held) when a lookup the cache counted
            as a miss is answered from the cache after all; its argument says
            whether the answer was stale.

    Attributes:
        loads: Loader runs started.
        coalesced: Misses that joined a load another caller had started.
        load_errors: Loader runs that raised.
        running: Loader runs started and not yet ended.
    """

    __slots__ = (
        "_clock",
        "_flights",
        "_lock",
        "_name",
        "_recount",
        "_store",
        "coalesced",
        "load_errors",
        "loads",
        "running",
    )

    def __init__(
        self,
        name: str,
        lock: threading.Lock,
        store: Store,
        clock: Clock,
        recount: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._lock = lock
        self._store = store
        self._clock = clock
        self._recount = recount
        # key -> owner (THREADS or an event loop) -> the load running for it.
        self._flights: dict[Hashable, dict[object, Flight[Any]]] = {}
        self.loads = self.coalesced = self.load_errors = self.running = 0

    def begin(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        stale_while_revalidate: float,
        new_event: Callable[[], _EventT],
    ) -> Start[_EventT]:
        """Settle a lookup of ``key`` that the cache counted as a miss."""
        with self._lock:
            entry = self._store.peek(key)
            if entry is not None:
                now = self._clock()
                if now < entry.fresh_until:  # a load finished since the lookup
                    self._recount(False)
                    return Start(entry.value, None, leader=False)
                if now < entry.fresh_until + stale_while_revalidate:
                    self._recount(True)
                    if key in self._flights:  # a load is already running: no second refresh
                        return Start(entry.value, None, leader=False)
                    refresh = self._new_flight(key, owner, ttl, new_event, refresh=True)
                    return Start(entry.value, refresh, leader=True)
            running: Flight[_EventT] | None = self._flights.get(key, {}).get(owner)
            if running is not None:
                self.coalesced += 1
                return Start(MISSING, running, leader=False)
            return Start(MISSING, self._new_flight(key, owner, ttl, new_event, refresh=False), True)

    def settle(self, flight: Flight[Any], value: Any) -> None:
        """End ``flight`` with ``value``: store it (unless forgotten) and wake the waiters."""
        flight.value = value
        try:
            with self._lock:
                self.running -= 1
                if self._release(flight):
                    self._store.put(flight.key, value, flight.ttl)
        except Exception as exc:  # a failing clock: the callers still get the value
            logger.warning(
                "cache %r could not store a loaded value (%s)", self._name, type(exc).__name__
            )
        finally:
            flight.done.set()

    def fail(self, flight: Flight[Any], exc: BaseException) -> None:
        """End ``flight`` with ``exc`` and wake the waiters.

        An exception that is not an ``Exception`` (an interrupt, a cancellation)
        reaches the waiters as :class:`CacheLoadAbortedError`.
        """
        if isinstance(exc, Exception):
            error = exc
        else:
            error = CacheLoadAbortedError(
                f"the shared load in cache {self._name!r} ended with {type(exc).__name__}"
            )
        with self._lock:
            self.running -= 1
            self.load_errors += 1
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

    def abandon(self, flight: Flight[Any]) -> None:
        """End ``flight`` as aborted if its load never ran to the end (a task cancelled early)."""
        if not flight.done.is_set():
            self.fail(flight, asyncio.CancelledError())

    def outcome(self, flight: Flight[Any], stale_if_error: float) -> Any:
        """Return a waiter's answer once ``flight`` is done: its value, a stale one, or raise."""
        if flight.error is None:
            return flight.value
        if stale_if_error:
            with self._lock:
                entry = self._store.peek(flight.key)
                if entry is not None and self._clock() < entry.fresh_until + stale_if_error:
                    self._recount(True)
                    return entry.value
        # Like asyncio.Future: one exception object, its original traceback each time.
        raise flight.error.with_traceback(flight.traceback)

    def forget(self, key: Hashable) -> None:
        """Let the loads running for ``key`` answer their callers but store nothing."""
        self._flights.pop(key, None)

    def forget_all(self) -> None:
        """:meth:`forget` every key."""
        self._flights.clear()

    def forget_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """:meth:`forget` every key that satisfies ``predicate``."""
        for key in [key for key in self._flights if predicate(key)]:
            del self._flights[key]

    def _new_flight(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        new_event: Callable[[], _EventT],
        *,
        refresh: bool,
    ) -> Flight[_EventT]:
        flight = Flight(key, owner, ttl, new_event(), refresh=refresh)
        self._flights.setdefault(key, {})[owner] = flight
        self.loads += 1
        self.running += 1
        return flight

    def _release(self, flight: Flight[Any]) -> bool:
        """Unregister ``flight``; False if set/delete/clear already forgot it."""
        owners = self._flights.get(flight.key)
        if owners is None or owners.get(flight.owner) is not flight:
            return False
        del owners[flight.owner]
        if not owners:
            del self._flights[flight.key]
        return True
