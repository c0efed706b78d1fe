"""The bookkeeping that :class:`AsyncLock` and :class:`KeyedLock` share: no waiting, no I/O.

Seerr's AsyncLock wakes every waiter of a key on each release and lets the
first one to run win: O(n) wake-ups per release, no FIFO order, no timeout.
Here each key has a holder (a :class:`Ticket`) and, once contended, a queue of
tickets; a release hands the key straight to the first ticket still waiting
(ownership moves before that waiter even runs), so a newcomer can never
overtake it and each hand-off wakes exactly one waiter.

:class:`HandOff` decides who holds what; the faces decide how a waiter
sleeps and is woken (a future or an event on an event loop, a primitive lock
for a thread) and, for threads, guard the table with a mutex. It is not
thread-safe by itself.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["HandOff", "LockStats", "Ticket", "live", "waited", "warn_statistics_renamed"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LockStats:
    """A snapshot of a lock's state and counters, from ``stats()``.

    Every seerrperf lock returns one (:class:`~seerrperf.KeyedLock`,
    :class:`~seerrperf.AsyncLock`, :class:`~seerrperf.PgAdvisoryLock`,
    :class:`~seerrperf.AsyncPgAdvisoryLock`); ``contended_acquisitions``
    never exceeds ``acquisitions``.

    Attributes:
        held_keys: Keys currently held (a key with waiters is always held).
        waiting_tasks: Tasks or threads queued for a key, not counting holders.
        acquisitions: Successful acquisitions since the lock was created (or,
            in a forked child, since the fork).
        contended_acquisitions: Those of ``acquisitions`` that had to queue.
        timeouts: Acquisitions that gave up with :class:`~seerrperf.LockTimeout`.
    """

    held_keys: int
    waiting_tasks: int
    acquisitions: int
    contended_acquisitions: int
    timeouts: int

    def as_dict(self) -> dict[str, int]:
        """Return the statistics as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


class Ticket:
    """One ``lock(key)``: the key, who asks (a task or a thread id), and where it stands.

    A ticket that takes a free key at once is never queued and only ``key``,
    ``owner`` and ``waited`` (False) are set; ``granted`` and ``gone`` matter
    once it queues.
    """

    __slots__ = ("gone", "granted", "key", "owner", "waited")

    key: Hashable
    owner: object
    waited: bool  # it queued; counted as contended once granted
    granted: bool  # the key was handed to it while it waited
    gone: bool  # gave up; skipped and dropped by the next hand-off


def waited(hold: object) -> bool:
    """Return whether an entered ``lock(key)`` of an in-process lock had to queue.

    The advisory locks count their contended acquisitions with it.
    """
    return isinstance(hold, Ticket) and hold.waited


class _WaitQueue(deque[Ticket]):
    """The waiters of one key, oldest first; departed waiters are removed lazily."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        super().__init__()
        self.gone = 0

    def depart(self, ticket: Ticket) -> None:
        ticket.gone = True
        self.gone += 1
        # Removing from the middle of a deque is O(n); instead compact once half
        # the entries are departed, which keeps the work per waiter O(1).
        if self.gone * 2 > len(self):
            live = [t for t in self if not t.gone]
            self.clear()
            self.extend(live)
            self.gone = 0


class HandOff:
    """Holders and FIFO queues per key, and the counters behind :class:`LockStats`.

    ``owners`` maps each held key to its holder's ticket; a face may take a
    free key itself with ``owners.setdefault(key, ticket) is ticket`` (one
    atomic dict operation, the fast path). Everything else goes through the
    methods. A key with no holder and no waiter is in neither dict, so idle
    keys cost nothing.

    Counting: a ticket that took a free key is counted when it releases (so
    the fast path touches no counter); one that queued is counted when the key
    is handed to it, and uncounted if it gives the key back unused.
    """

    __slots__ = (
        "__weakref__",
        "contended",
        "counted",
        "owners",
        "queued_holders",
        "queues",
        "timeouts",
        "waiting",
    )

    def __init__(self) -> None:
        self.owners: dict[Hashable, Ticket] = {}
        self.queues: dict[Hashable, _WaitQueue] = {}  # only keys that have waiters
        self.waiting = 0
        self.queued_holders = 0  # holders that got the key by hand-off
        self.counted = 0  # released direct takes + hand-offs
        self.contended = 0
        self.timeouts = 0

    def holder(self, key: Hashable) -> Ticket | None:
        """Return the ticket holding ``key``, if any."""
        return self.owners.get(key)

    def enqueue(self, ticket: Ticket) -> None:
        """Queue ``ticket`` behind the holder of its key (the caller saw there is one)."""
        key = ticket.key
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = _WaitQueue()
        ticket.waited = True
        ticket.granted = False
        ticket.gone = False
        queue.append(ticket)
        self.waiting += 1

    def withdraw(self, ticket: Ticket, *, timed_out: bool) -> bool:
        """A queued ticket stops waiting (a timeout, a cancellation, an interruption).

        Returns:
            ``True`` if the key was handed to it in the meantime: it holds the
            key now, and must either use it or give it back with
            :meth:`give_back`. ``False``: it left the queue.
        """
        if ticket.granted:
            return True
        self.waiting -= 1
        queue = self.queues[ticket.key]
        queue.depart(ticket)
        if timed_out:
            self.timeouts += 1
        return False

    def give_back(self, ticket: Ticket) -> Ticket | None:
        """A ticket handed the key gives it back before using it (it was cancelled).

        Returns:
            The next holder, to wake, as :meth:`release`.
        """
        self.counted -= 1
        self.contended -= 1
        return self.release(ticket)

    def count_timeout(self) -> None:
        """Count a wait that gave up without queueing (``timeout=0``)."""
        self.timeouts += 1

    def release(self, ticket: Ticket) -> Ticket | None:
        """Release ``ticket``'s key: hand it to the first live waiter or forget it.

        Returns:
            The ticket that now holds the key (to be woken), or ``None``.
        """
        key = ticket.key
        owners = self.owners
        if owners.get(key) is not ticket:
            return None  # forgotten at a fork (see forget)
        if ticket.waited:
            self.queued_holders -= 1
        else:
            self.counted += 1
        queue = self.queues.get(key) if self.queues else None
        if queue is not None:
            while queue:
                successor = queue.popleft()
                if successor.gone:
                    queue.gone -= 1
                    continue
                # Ownership moves now, before the waiter runs, so nobody can
                # take the key in between.
                successor.granted = True
                owners[key] = successor
                self.waiting -= 1
                self.queued_holders += 1
                self.counted += 1
                self.contended += 1
                return successor
            del self.queues[key]
        del owners[key]
        return None

    def stats(self) -> LockStats:
        """Return the current :class:`LockStats`."""
        owners = len(self.owners)
        return LockStats(
            held_keys=owners,
            waiting_tasks=self.waiting,
            # Holders that took a free key are counted when they release.
            acquisitions=self.counted + owners - self.queued_holders,
            contended_acquisitions=self.contended,
            timeouts=self.timeouts,
        )

    def forget(self, exists: Callable[[Ticket], bool]) -> list[Ticket]:
        """After a fork: forget every ticket whose task or thread is not in this process.

        Counters start again from zero. A key whose holder is forgotten goes to
        its first remaining waiter.

        Returns:
            The tickets that now hold a key and must be woken.
        """
        kept = {key: ticket for key, ticket in self.owners.items() if exists(ticket)}
        woken: list[Ticket] = []
        queues: dict[Hashable, _WaitQueue] = {}
        for key, queue in self.queues.items():
            live = [t for t in queue if not t.gone and exists(t)]
            if live and key not in kept:
                first = live.pop(0)
                first.granted = True
                kept[key] = first
                woken.append(first)
            if live:
                queues[key] = _WaitQueue()
                queues[key].extend(live)
        # In place: the faces keep references to these dicts.
        self.owners.clear()
        self.owners.update(kept)
        self.queues.clear()
        self.queues.update(queues)
        self.waiting = sum(len(q) for q in queues.values())
        # Holders that queued count as handed over since the fork; the others
        # are counted when they release, as usual.
        self.queued_holders = sum(t.waited for t in kept.values())
        self.counted = self.contended = self.queued_holders
        self.timeouts = 0
        return woken


def live(registry: weakref.WeakSet[_T]) -> list[_T]:
    """The locks in ``registry`` now, for a fork handler.

    Another thread may create a lock while we copy the set (a ``WeakSet``
    iterates in Python code, so the GIL can switch mid-copy): copy again.
    """
    while True:
        try:
            return list(registry)
        except RuntimeError:  # "Set changed size during iteration"
            continue


def warn_statistics_renamed() -> None:
    """Warn that a lock's ``statistics()`` is now ``stats()`` (one release of grace)."""
    warnings.warn(
        "statistics() is deprecated and will be removed in the next release; call stats()",
        DeprecationWarning,
        stacklevel=3,
    )
