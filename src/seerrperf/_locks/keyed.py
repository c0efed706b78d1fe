"""A fair per-key lock for threads: :class:`KeyedLock`, the thread face of :class:`HandOff`.

The table is guarded by one mutex per lock, held only for a few dict
operations. Taking a free key needs no mutex at all (one atomic
``dict.setdefault``); a release takes it, because deciding "no waiter, forget
the key" and forgetting it must be one step, or a waiter arriving in between
would be stranded. A waiter sleeps on a primitive lock of its own, which the
releaser opens after handing it the key.
"""

from __future__ import annotations

import os
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
        self.waited = False
        try:
            if self._lock._owners.setdefault(self.key, self) is self:
                return  # the fast path: one atomic dict operation, no mutex
        except TypeError:
            self.owner = None
            raise ConfigurationError(
                f"key must be hashable, got {type(self.key).__name__}"
            ) from None
        try:
            self._lock._wait(self)
        except BaseException:
            self.owner = None  # not held: the block does not run
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock = self._lock
        table = lock._table
        mutex = lock._mutex
        mutex.acquire()  # not "with": measurably cheaper on the hot path
        try:
            if table.queues or self.waited:
                successor = table.release(self)
            else:  # HandOff.release for a key nobody waits for, inlined: the hot path
                del lock._owners[self.key]
                table.counted += 1
                successor = None
        finally:
            mutex.release()
        self.owner = None
        if successor is not None:
            _wake(successor)


def _wake(ticket: Ticket) -> None:
    assert isinstance(ticket, _Hold)
    ticket.signal.release()


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

    __slots__ = ("__weakref__", "_mutex", "_owners", "_table")

    def __init__(self) -> None:
        self._table = HandOff()
        self._owners = self._table.owners
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
        hold = _new(_Hold)
        hold._lock = self
        hold.key = key
        hold._timeout = timeout
        hold.owner = None
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
            return self._table.stats()

    def __repr__(self) -> str:
        return f"<KeyedLock held={len(self._owners)} waiting={self._table.waiting}>"

    def _wait(self, hold: _Hold) -> None:
        table = self._table
        me = hold.owner
        timeout = hold._timeout
        with self._mutex:
            holder = table.owners.setdefault(hold.key, hold)
            if holder is hold:
                return  # released meanwhile
            if holder.owner == me:
                raise RuntimeError(
                    "this thread already holds the key (KeyedLock is not re-entrant)"
                )
            if timeout == 0:
                table.count_timeout()
                raise LockTimeout("the key is held and timeout=0 does not wait")
            signal = hold.signal = _allocate_lock()
            signal.acquire()
            table.enqueue(hold)
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
        lock._mutex.release()
    _FORKING.clear()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
