"""A fair per-key lock for threads: :class:`KeyedLock`, the thread face of :class:`HandOff`.

The table is guarded by one mutex per lock, held only for a few dict
operations, and never on the uncontended path. Taking a free key is one
atomic ``dict.setdefault`` (and a look that nobody queues for it). Releasing
a key nobody waits for is one atomic ``del``, then a second look at the
queues: a waiter queues under the mutex *before* it looks whether the key is
still held, and a releaser deletes the key *before* it looks for waiters, so
(the GIL orders the steps) at least one of them sees the other and hands the
key to the first waiter under the mutex (:meth:`HandOff.claim`). A newcomer
that takes the key in between sees the queue too and gives way. A waiter
sleeps on a primitive lock of its own, which the releaser opens after handing
it the key.

``lock(key)`` reuses the context manager of the last uncontended
``with lock(key):`` block when nothing else refers to it (its reference count
says so, at the end of the block and again when it is reused), so the
uncontended path allocates nothing.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import ParamSpec, TypeVar

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, LockTimeout

from .handoff import HandOff, LockStats, Ticket, live

__all__ = ["KeyedLock"]

P = ParamSpec("P")
T = TypeVar("T")

_new = object.__new__
_get_ident = threading.get_ident
_allocate_lock = threading.Lock
_refs = sys.getrefcount
_IN_USE = "this lock(key) is already in use: call lock(key) for each block"


class _Hold(Ticket):
    """What ``lock(key)`` returns: a ticket that acquires on enter and releases on exit."""

    __slots__ = ("_lock", "_timeout", "signal")

    _lock: KeyedLock
    _timeout: float | None
    signal: threading.Lock  # held until the key is handed to this waiter

    def __enter__(self) -> None:
        if self.owner is not None:
            raise RuntimeError(_IN_USE)
        self.owner = _get_ident()
        lock = self._lock
        try:
            if lock._owners.setdefault(self.key, self) is self:
                queues = lock._queues
                if not queues or self.key not in queues:
                    return  # the fast path: one atomic dict operation, no mutex
        except TypeError:
            self.owner = None
            raise ConfigurationError(
                f"key must be hashable, got {type(self.key).__name__}"
            ) from None
        try:
            lock._wait(self)
        except BaseException:
            self.owner = None  # not held: the block does not run
            self.waited = False
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock = self._lock
        key = self.key
        queues = lock._queues
        if self.waited or (queues and key in queues):
            lock._release(self)
            return
        next(lock._released)  # counted first: stats may count it a moment early, never late
        del lock._owners[key]
        self.owner = None
        if queues and key in queues:
            lock._claim(key)  # a waiter queued between our look and the release
        if _refs(self) == _EXITING:  # only this call refers to it: a spare for lock(key)
            self.key = None  # keep no key alive
            lock._spare[0] = self


def _sole_reference() -> int:
    # What _refs gives for an object only a local variable refers to, written
    # as KeyedLock.__call__ looks at a spare context manager.
    hold = _new(_Hold)
    return _refs(hold)


class _Probe:
    exiting = 0

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        _Probe.exiting = _refs(self)  # as _Hold.__exit__ looks at itself


def _exiting_reference() -> int:
    # What _refs gives in __exit__ when only the with statement refers to the
    # context manager (as in ``with lock(key):``): measured, not assumed.
    with _Probe():
        pass
    return _Probe.exiting


_SOLE = _sole_reference()
_EXITING = _exiting_reference()


def _wake(ticket: Ticket) -> None:
    assert isinstance(ticket, _Hold)
    ticket.signal.release()


def _count(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` without taking it (``count(5)`` -> 5)."""
    return int(repr(counter)[6:-1])


class KeyedLock:
    """A fair lock per key, for threads: the twin of :class:`~seerrperf.AsyncLock`.

    ::

        lock = KeyedLock()  # one per process, e.g. at module level

        def request_movie(tmdb_id: int) -> None:
            with lock(("movie", tmdb_id), timeout=2.0):
                if not find_active_request("movie", tmdb_id):
                    create_request("movie", tmdb_id)

    Guarantees, per key: one holder at a time; waiting threads get the key in
    the order they asked for it (a release hands it straight to the first
    waiter, so a newcomer never overtakes); a release wakes one thread, never
    all, in O(1); a waiter that times out leaves the queue; a holder that
    raises releases; a key with no holder and no waiter is forgotten.

    It protects threads of one process. For worker processes (``gunicorn
    -w 4``) use :class:`~seerrperf.PgAdvisoryLock`, which queues the threads
    of each process on a ``KeyedLock`` of its own.

    Not re-entrant: a thread that asks again for a key it holds gets
    ``RuntimeError`` instead of deadlocking (another thread it starts just
    waits). Fork-safe: in a child process only the forking thread exists, so
    keys held or awaited by other threads at the fork are forgotten there and
    the child never waits for a thread that is not there.
    """

    __slots__ = ("__weakref__", "_mutex", "_owners", "_queues", "_released", "_spare", "_table")

    def __init__(self) -> None:
        self._table = HandOff()
        self._owners = self._table.owners
        self._queues = self._table.queues
        self._released = itertools.count()  # uncontended releases (atomic: no mutex)
        self._spare: dict[int, _Hold] = {}  # the last uncontended lock(key), for reuse
        self._mutex = threading.Lock()
        _LIVE.add(self)

    def __call__(
        self, key: Hashable, *, timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Return a context manager that holds ``key`` inside its block.

        Args:
            key: Any hashable value; prefer tuples such as ``("movie", 603)``
                so a movie and a show with the same id are different keys.
            timeout: Seconds to wait for the key; ``None`` waits as long as it
                takes, ``0`` only takes a free key.

        Returns:
            The context manager: ``with lock(key) as held:`` (``held`` is
            ``None``; an advisory lock gives its connection there). Use each
            one for one block at a time.

        Raises:
            ConfigurationError: ``timeout`` is negative or not a finite number;
                on entering, ``key`` is not hashable.
        """
        if timeout is not None:
            timeout = _validate.duration("timeout", timeout)
        hold = self._spare.pop(0, None)  # atomic: no other thread gets the same one
        if hold is None or _refs(hold) != _SOLE:  # someone still refers to it: keep it theirs
            hold = _new(_Hold)
            hold._lock = self
            hold.owner = None
            hold.waited = False
        hold.key = key
        hold._timeout = timeout
        return hold

    def dispatch(
        self, key: Hashable, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(*args, **kwargs)`` while holding ``key``.

        Args:
            key: The key to hold, as for ``lock(key)``.
            fn: A function.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returns.

        Raises:
            ConfigurationError: ``fn`` cannot be called.
            RuntimeError: The current thread already holds ``key``.
        """
        _validate.function("fn", fn, "a function")
        with self(key):
            return fn(*args, **kwargs)

    def locked(self, key: Hashable) -> bool:
        """Return whether some thread holds ``key``."""
        return key in self._owners

    def __len__(self) -> int:
        """Number of keys currently held or waited on."""
        return len(self._owners)

    def stats(self) -> LockStats:
        """Return the current :class:`LockStats`."""
        with self._mutex:
            return self._table.stats(released=_count(self._released))

    def __repr__(self) -> str:
        return f"<KeyedLock held={len(self._owners)} waiting={self._table.waiting}>"

    def _wait(self, hold: _Hold) -> None:
        table = self._table
        key = hold.key
        me = hold.owner
        timeout = hold._timeout
        successor: Ticket | None = None
        with self._mutex:
            holder = table.owners.setdefault(key, hold)
            if holder is hold:
                if key not in table.queues:
                    return  # released meanwhile, and nobody waits
                # Took a free key while others wait for it (a release between
                # its two steps): the first of them gets it, we queue.
                successor = table.pass_on(hold)
                if successor is None:
                    return  # they had all given up: ours
                holder = successor
            elif holder.owner == me:
                raise RuntimeError(
                    "this thread already holds the key (KeyedLock is not re-entrant)"
                )
            if timeout == 0:
                table.count_timeout()
            else:
                signal = hold.signal = _allocate_lock()
                signal.acquire()
                table.enqueue(hold)
                if key not in table.owners:
                    # The holder released without the mutex after we looked;
                    # queued now, we hand the key on ourselves (maybe to us).
                    successor = table.claim(key)
        if successor is not None:
            _wake(successor)
        if timeout == 0:
            raise LockTimeout("the key is held and timeout=0 does not wait")
        try:
            woken = signal.acquire(True, -1 if timeout is None else timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt in the main thread). If the key was
            # handed over in the meantime it is ours now: pass it on.
            with self._mutex:
                successor = table.give_back(hold) if table.withdraw(hold, timed_out=False) else None
            if successor is not None:
                _wake(successor)
            raise
        if woken:
            return
        with self._mutex:
            if table.withdraw(hold, timed_out=True):
                return  # handed over just as the wait expired: it is ours
        raise LockTimeout(f"lock not acquired within {timeout} s")

    def _release(self, hold: _Hold) -> None:
        """Release a key that had waiters, or was handed to ``hold``."""
        with self._mutex:
            successor = self._table.release(hold)
        hold.owner = None
        hold.waited = False
        if successor is not None:
            _wake(successor)

    def _claim(self, key: Hashable) -> None:
        with self._mutex:
            successor = self._table.claim(key)
        if successor is not None:
            _wake(successor)


_LIVE: weakref.WeakSet[KeyedLock] = weakref.WeakSet()
_FORKING: list[KeyedLock] = []


def _before_fork() -> None:
    # Hold every mutex across the fork, so the child never inherits one that
    # another thread held mid-update (it would never be released there).
    _FORKING[:] = live(_LIVE)
    for lock in _FORKING:
        lock._mutex.acquire()


def _after_fork_in_parent() -> None:
    for lock in _FORKING:
        lock._mutex.release()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    me = _get_ident()
    for lock in _FORKING:
        # Only this thread survived: forget what the others held or awaited.
        for ticket in lock._table.forget(lambda ticket: ticket.owner == me):
            _wake(ticket)  # pragma: no cover - the forking thread was not waiting
        lock._released = itertools.count()  # counters start again from zero
        lock._spare.clear()
        lock._mutex.release()
    _FORKING.clear()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
