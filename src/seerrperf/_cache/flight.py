"""The single-flight state machine: one loader run per key, shared by every caller that misses.

Pure logic, shared by both paths of a cache: the sync path (threads, which
wait on a ``threading.Event`` and run the loader themselves) and the async
path (tasks, which wait on an ``anyio.Event`` while the loader runs as a
detached task). The paths differ only in how they wait and how they start a
load; what a lookup answers, who loads, what is stored and what a waiter gets
is decided here:

- :meth:`SingleFlight.begin` settles a lookup that missed: a value that became
  fresh meanwhile, a stale value inside the stale-while-revalidate window
  (starting one background refresh unless the key is backing off after a
  failed one), joining the load already running for the key and owner, or
  leading a new one -- or, with ``max_loading`` loads already running, a
  flight that is over before it starts (:class:`CacheOverloadedError`).
- :meth:`SingleFlight.settle` and :meth:`SingleFlight.fail` end a load: store
  its value (unless a ``set``, ``delete`` or ``clear`` forgot the key
  meanwhile, or the load ran past its deadline) or record its exception, and
  wake the waiters.
- :meth:`SingleFlight.time_out` ends a load that is past its deadline: its
  waiters get :class:`CacheLoadTimeout` and the key is free for a new load,
  whether or not the loader itself has stopped.
- :meth:`SingleFlight.outcome` gives a waiter its answer: the loaded value, a
  stale value inside the stale-if-error window, or the loader's exception.

Flights are kept per key and per owner: all threads share one owner, and each
event loop is an owner of its own (an event of one loop cannot be awaited
from another, nor set from another thread: a flight is only ever ended from
its owner's side, or by a thread for thread flights).

Two clocks are involved. Entry deadlines (freshness, stale windows, refresh
backoff) use the cache's ``clock=``. Load deadlines use ``time.monotonic``:
they bound how long real threads and tasks wait, which a test clock cannot
shorten.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, TypeVar

import anyio

from seerrperf._errors import CacheLoadAbortedError, CacheLoadTimeout, CacheOverloadedError

from .store import Store, measure

__all__ = [
    "MISSING",
    "REFRESH_BACKOFF_FIRST",
    "REFRESH_BACKOFF_MAX",
    "THREADS",
    "Flight",
    "SingleFlight",
    "Start",
    "refresh_backoff",
]

logger = logging.getLogger("seerrperf.cache")

_EventT = TypeVar("_EventT", threading.Event, anyio.Event)

REFRESH_BACKOFF_FIRST = 1.0
"""Seconds a key waits for its next refresh after its first failed one."""

REFRESH_BACKOFF_MAX = 60.0
"""The longest wait between two refreshes of one key (the backoff doubles up to it)."""


def refresh_backoff(failures: int) -> float:
    """Seconds to wait before the next refresh after ``failures`` failed ones in a row."""
    return min(REFRESH_BACKOFF_MAX, REFRESH_BACKOFF_FIRST * 2.0 ** min(failures - 1, 32))


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING = _Missing.MISSING
"""Marks "no value", so that ``None`` and other falsy values are cached."""

THREADS = object()
"""The owner of sync flights: all threads share one load per key."""


class Flight(Generic[_EventT]):
    """One loader run whose outcome every concurrent caller of a key shares.

    Its answer is fixed once (``ended``): by the run's result, its exception,
    its deadline passing or a refusal. ``running`` stays true until the loader
    itself has returned, which for a hung sync loader may be never.
    """

    __slots__ = (
        "deadline",
        "done",
        "ended",
        "error",
        "key",
        "owner",
        "refresh",
        "running",
        "timeout",
        "traceback",
        "ttl",
        "value",
    )

    def __init__(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        timeout: float,
        done: _EventT,
        *,
        refresh: bool,
    ) -> None:
        self.key = key
        self.owner = owner  # THREADS, or the event loop the load runs on
        self.ttl = ttl
        self.timeout = timeout  # seconds the load may take (load_timeout)
        self.deadline = time.monotonic() + timeout
        self.done: _EventT = done
        self.refresh = refresh  # a stale-while-revalidate refresh: nobody waits for it
        self.ended = False  # the answer is fixed and the waiters are (being) woken
        self.running = True  # the loader run has not returned yet
        self.value: Any = None
        self.error: Exception | None = None
        self.traceback: Any = None

    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - time.monotonic())


class Start(NamedTuple, Generic[_EventT]):
    """What :meth:`SingleFlight.begin` decided.

    ``value`` other than :data:`MISSING` is the answer. ``leader`` means the
    caller must start ``flight``'s load (with a value too, that is a
    background refresh); otherwise, without a value, the caller waits for
    ``flight`` (which may be over already: a refused load).
    """

    value: Any
    flight: Flight[_EventT] | None
    leader: bool


class SingleFlight:
    """The running loads of one cache, and the rules for answering around them.

    Shares the cache's lock and store; :meth:`begin`, :meth:`settle`,
    :meth:`fail`, :meth:`time_out` and :meth:`outcome` take the lock
    themselves, the ``forget`` methods expect it held.

    Args:
        name: The cache's name, for messages and log lines.
        lock: The cache's lock.
        store: The cache's entries (and its clock).
        max_loading: Most loader runs at once; a new load beyond it is refused.
        recount: Called (with the lock held) when a lookup the cache counted
            as a miss is answered from the cache after all; its argument says
            whether the answer was stale.

    Attributes:
        loads: Loader runs started.
        coalesced: Misses that joined a load another caller had started.
        load_errors: Loads that failed (raised, or ran past their deadline).
        load_timeouts: Loads that ran past their deadline.
        rejected: Loads (and refreshes) not started because ``max_loading``
            runs were under way.
        running: Loader runs started whose loader has not returned yet
            (timed-out runs included, until they return).
    """

    __slots__ = (
        "_flights",
        "_lock",
        "_name",
        "_recount",
        "_store",
        "coalesced",
        "load_errors",
        "load_timeouts",
        "loads",
        "max_loading",
        "rejected",
        "running",
    )

    def __init__(
        self,
        name: str,
        lock: threading.Lock,
        store: Store,
        max_loading: int,
        recount: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._lock = lock
        self._store = store
        self.max_loading = max_loading
        self._recount = recount
        # key -> owner (THREADS or an event loop) -> the load running for it.
        self._flights: dict[Hashable, dict[object, Flight[Any]]] = {}
        self.loads = self.coalesced = self.load_errors = self.running = 0
        self.load_timeouts = self.rejected = 0

    def begin(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        stale_while_revalidate: float,
        timeout: float,
        new_event: Callable[[], _EventT],
    ) -> Start[_EventT]:
        """Settle a lookup of ``key`` that the cache counted as a miss.

        Raises:
            ConfigurationError: The cache's clock returned something that is
                not a finite number (a loud failure instead of a cache that
                silently never hits).
        """
        with self._lock:
            now = self._store.now()
            entry = self._store.peek(key, now)
            if entry is not None:
                if now < entry.fresh_until:  # a load finished since the lookup
                    self._recount(False)
                    return Start(entry.value, None, leader=False)
                if now < entry.fresh_until + stale_while_revalidate:
                    self._recount(True)
                    self._store.touch(key)  # served: as recently used as a hit
                    if self._loading(key, owner) or now < entry.retry_at:
                        return Start(entry.value, None, leader=False)  # one refresh at a time
                    if self.running >= self.max_loading:
                        self.rejected += 1
                        return Start(entry.value, None, leader=False)
                    refresh = self._new_flight(key, owner, ttl, timeout, new_event, refresh=True)
                    return Start(entry.value, refresh, leader=True)
            running: Flight[_EventT] | None = self._flights.get(key, {}).get(owner)
            if running is not None and not running.remaining():
                self._expire(running)  # hung past its deadline: the key is free again
                running = None
            if running is not None:
                self.coalesced += 1
                return Start(MISSING, running, leader=False)
            if self.running >= self.max_loading:
                self.rejected += 1
                return Start(MISSING, self._refused(key, owner, ttl, new_event), leader=False)
            flight = self._new_flight(key, owner, ttl, timeout, new_event, refresh=False)
            return Start(MISSING, flight, leader=True)

    def settle(self, flight: Flight[Any], value: Any) -> None:
        """End ``flight``'s run with ``value``: store it unless forgotten or late; wake waiters."""
        # Measured before the lock, and only when the value may be stored.
        sizes = measure(flight.key, value) if flight.ttl and not flight.ended else (0, 0)
        with self._lock:
            self._run_ended(flight)
            if flight.ended:  # past its deadline: its waiters have their answer, the key moved on
                return
            flight.ended = True
            flight.value = value
            try:
                if self._release(flight):
                    self._store.put(flight.key, value, flight.ttl, sizes)
            except Exception as exc:  # a failing clock: the callers still get the value
                logger.warning(
                    "cache %r could not store a loaded value (%s)", self._name, type(exc).__name__
                )
        flight.done.set()

    def fail(self, flight: Flight[Any], exc: BaseException) -> None:
        """End ``flight``'s run with ``exc`` and wake the waiters.

        An exception that is not an ``Exception`` (an interrupt, a cancellation)
        reaches the waiters as :class:`CacheLoadAbortedError`. A failed refresh
        makes the key wait before its next one (:func:`refresh_backoff`).
        """
        if isinstance(exc, Exception):
            error = exc
        else:
            error = CacheLoadAbortedError(
                f"the shared load in cache {self._name!r} ended with {type(exc).__name__}"
            )
        with self._lock:
            self._run_ended(flight)
            if flight.ended:
                return
            self.load_errors += 1
            # False when set/delete/clear forgot the key meanwhile (the loader may
            # have done so itself, e.g. on a 404): then no stale entry stays.
            still_ours = self._end_with(flight, error)
        if flight.refresh and isinstance(exc, Exception):
            # The type only: a loader's message may carry a URL with an API key.
            logger.warning(
                "background refresh in cache %r failed (%s); %s",
                self._name,
                type(exc).__name__,
                "the stale entry stays" if still_ours else "the entry was removed",
            )
        flight.done.set()

    def time_out(self, flight: Flight[Any], *, run_ended: bool) -> None:
        """End ``flight`` at its deadline: its waiters get :class:`CacheLoadTimeout`.

        The key is free at once for a new load. ``run_ended`` says whether the
        loader has stopped (an async load cancelled at its deadline) or may
        still be running (a sync load in its caller's thread, which cannot be
        stopped: it keeps counting in :attr:`running` until it returns, and its
        late result is not stored).
        """
        with self._lock:
            if run_ended:
                self._run_ended(flight)
            if flight.ended:
                return
            self._expire(flight)

    def abandon(self, flight: Flight[Any]) -> None:
        """End ``flight`` as aborted if its run never reached the end (a task cancelled early)."""
        if flight.running:
            self.fail(flight, asyncio.CancelledError())

    def outcome(self, flight: Flight[Any], stale_if_error: float) -> Any:
        """Return a waiter's answer once ``flight`` is done: its value, a stale one, or raise."""
        if flight.error is None:
            return flight.value
        if stale_if_error:
            with self._lock:
                now = self._store.now()
                entry = self._store.peek(flight.key, now)
                if entry is not None and now < entry.fresh_until + stale_if_error:
                    self._recount(True)
                    return entry.value
        # Like asyncio.Future: one exception object, its original traceback each time.
        raise flight.error.with_traceback(flight.traceback)

    def __contains__(self, key: object) -> bool:
        """Whether a load of ``key`` is registered (lock held)."""
        return key in self._flights

    def keys(self) -> list[Hashable]:
        """The keys with a load registered (lock held)."""
        return list(self._flights)

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

    def reset(self, lock: threading.Lock) -> None:
        """Start afresh with ``lock`` after a fork: no flight survives into the child.

        The threads and tasks that ran them exist only in the parent, so the
        child neither waits for them nor counts them.
        """
        self._lock = lock
        self._flights = {}
        self.running = 0

    # -- with the lock held ---------------------------------------------------

    def _loading(self, key: Hashable, owner: object) -> bool:
        """Whether a load of ``key`` is under way (ending this owner's overdue ones)."""
        owners = self._flights.get(key)
        if not owners:
            return False
        mine = owners.get(owner)
        if mine is not None and not mine.remaining():
            self._expire(mine)
        # Another owner's overdue load is not ended from here (its event belongs
        # to another loop); it no longer blocks a refresh either.
        return any(flight.remaining() for flight in self._flights.get(key, {}).values())

    def _new_flight(
        self,
        key: Hashable,
        owner: object,
        ttl: float,
        timeout: float,
        new_event: Callable[[], _EventT],
        *,
        refresh: bool,
    ) -> Flight[_EventT]:
        flight = Flight(key, owner, ttl, timeout, new_event(), refresh=refresh)
        self._flights.setdefault(key, {})[owner] = flight
        self.loads += 1
        self.running += 1
        return flight

    def _refused(
        self, key: Hashable, owner: object, ttl: float, new_event: Callable[[], _EventT]
    ) -> Flight[_EventT]:
        """A flight that is over before it starts: too many loads are running."""
        flight = Flight(key, owner, ttl, 0.0, new_event(), refresh=False)
        flight.running = False
        flight.ended = True
        flight.error = CacheOverloadedError(
            f"cache {self._name!r} already runs {self.running} loads (max_loading="
            f"{self.max_loading}); this one was not started. Many loads still running "
            "usually means the upstream hangs: see CacheStats.loading and load_timeouts"
        )
        flight.done.set()
        return flight

    def _expire(self, flight: Flight[Any]) -> None:
        self.load_errors += 1
        self.load_timeouts += 1
        still_ours = self._end_with(
            flight,
            CacheLoadTimeout(
                f"the shared load in cache {self._name!r} did not finish within its "
                f"load_timeout of {flight.timeout:g} s; the key is free for a new load"
            ),
        )
        if flight.refresh:
            logger.warning(
                "background refresh in cache %r timed out; %s",
                self._name,
                "the stale entry stays" if still_ours else "the entry was removed",
            )
        flight.done.set()

    def _end_with(self, flight: Flight[Any], error: Exception) -> bool:
        """Fix ``flight``'s answer to ``error``; False if the key was forgotten meanwhile."""
        flight.ended = True
        flight.error = error
        flight.traceback = error.__traceback__
        still_ours = self._release(flight)
        entry = self._store.find(flight.key) if still_ours and flight.refresh else None
        if entry is not None:
            try:
                now = self._store.now()
                entry.failures += 1
                entry.retry_at = now + refresh_backoff(entry.failures)
            except Exception as exc:  # a failing clock: the waiters are woken all the same
                logger.warning(
                    "cache %r could not schedule the next refresh (%s)",
                    self._name,
                    type(exc).__name__,
                )
        return still_ours

    def _run_ended(self, flight: Flight[Any]) -> None:
        if flight.running:
            flight.running = False
            self.running -= 1

    def _release(self, flight: Flight[Any]) -> bool:
        """Unregister ``flight``; False if set/delete/clear already forgot it."""
        owners = self._flights.get(flight.key)
        if owners is None or owners.get(flight.owner) is not flight:
            return False
        del owners[flight.owner]
        if not owners:
            del self._flights[flight.key]
        return True
