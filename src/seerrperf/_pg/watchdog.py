"""Hard deadlines for work on a connection, even when the server never answers.

Cancelling a psycopg query makes psycopg ask the server to cancel and wait up
to ten seconds for it; a frozen server or a black-holed network ignores that.
A :class:`SocketAlarm` instead shuts the connection's socket down when it
rings, which fails the blocked read at once; whoever owns the connection then
closes it (:meth:`SocketAlarm.stop` says whether it rang), so no pool ever
hands it out again.

Alarms ring from one of two timers:

- :func:`ring_later` -- one daemon thread per process with a heap of
  deadlines, for sync code (the thread that waits on the socket cannot ring
  its own alarm). Arming costs a lock and a heap push, not a thread; after a
  fork the child starts with an empty heap and a thread of its own.
- :func:`aring_later` -- the running event loop's ``call_later``, for async
  code (the loop is free while a task waits on the socket).

:class:`Watchdog` is the context-manager face used by the health checks. A
deadline set with :func:`deadline_scope` also bounds the liveness check that
seerrperf's pools run inside ``getconn()`` (see ``pool``): the check runs in
the caller's thread or task, so it sees the context variable. The deadline is
read on the caller's clock; the timer counts what is left of it in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol

from seerrperf._runtime import Clock

__all__ = [
    "SocketAlarm",
    "Watchdog",
    "aring_later",
    "call_later",
    "deadline_scope",
    "guard_check",
    "ring_later",
    "shut_down",
]

logger = logging.getLogger("seerrperf.pool")

_deadline: contextvars.ContextVar[tuple[float, Clock] | None] = contextvars.ContextVar(
    "seerrperf_deadline", default=None
)

_ACTIVE = 1  # psycopg.pq.TransactionStatus.ACTIVE: a command is in progress


class _PGconn(Protocol):
    @property
    def socket(self) -> int: ...

    @property
    def transaction_status(self) -> int: ...

    def finish(self) -> None: ...


class _HasPGconn(Protocol):
    @property
    def pgconn(self) -> _PGconn: ...


class Cancellable(Protocol):
    """What the timers return: something to call off."""

    def cancel(self) -> None: ...


class SocketAlarm:
    """Shuts a connection's socket down when it rings, unless stopped first.

    It rings only while a command is in progress on the connection (a query,
    a commit): a connection idling in ``notifies()`` waits for the server
    legitimately, and a connection already closed has nothing to shut down
    (its descriptor may belong to another socket by then).

    Ringing and stopping may race from two threads: a lock decides which came
    first, and an alarm rings at most once. Whoever stopped it closes the
    connection (``pgconn.finish()``) when it rang, in the owner's thread, never
    in the timer's.
    """

    __slots__ = ("_fd", "_lock", "_pgconn", "_stopped", "_timer", "fired")

    def __init__(self, conn: _HasPGconn) -> None:
        self._pgconn = conn.pgconn
        self._fd = self._pgconn.socket
        self._lock = threading.Lock()
        self._stopped = False
        self._timer: Cancellable | None = None
        self.fired = False

    def ring(self) -> None:
        """Shut the socket down now (a no-op once stopped or rung)."""
        with self._lock:
            if self._stopped or self.fired:
                return
            self.fired = shut_down(self._pgconn, self._fd)

    def set_timer(self, timer: Cancellable) -> None:
        """Replace the timer that will ring this alarm (the old one is called off)."""
        old, self._timer = self._timer, timer
        if old is not None:
            old.cancel()

    def stop(self) -> bool:
        """Disarm; return whether the alarm rang (the connection is then closed)."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._stopped = True
            fired = self.fired
        if fired:
            self._pgconn.finish()  # its socket is shut: never hand it out again
        return fired


def shut_down(pgconn: _PGconn, fd: int | None = None) -> bool:
    """Shut down the socket of ``pgconn`` if a command is in progress on it.

    Returns:
        Whether it was shut down. The blocked reader wakes up with EOF; the
        caller must still close the connection (``pgconn.finish()``) in the
        thread that owns it.
    """
    if pgconn.transaction_status != _ACTIVE:
        return False
    if fd is None:
        fd = pgconn.socket
    # A duplicate descriptor shares the socket: shutting it down wakes the
    # blocked reader with EOF; closing our copy leaves psycopg's.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
    return True


class _Entry:
    __slots__ = ("action", "cancelled", "owner")

    def __init__(self, action: Callable[[], None], owner: _TimerThread) -> None:
        self.action = action
        self.cancelled = False
        self.owner = owner

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner.cancelled()


class _TimerThread:
    """One daemon thread running actions at deadlines, for the whole process."""

    _COMPACT_MIN = 256  # below this many entries, cancelled ones just wait their turn

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, action: Callable[[], None]) -> _Entry:
        entry = _Entry(action, self)
        when = time.monotonic() + max(0.0, delay)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="seerrperf-watchdog", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._seq), entry))
            if self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def cancelled(self) -> None:
        # Cancelled entries are dropped lazily; compact when they are the majority,
        # so a steady stream of queries that finish in time keeps the heap small.
        with self._cond:
            self._cancelled += 1
            if self._cancelled > self._COMPACT_MIN and self._cancelled * 2 > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        with self._cond:
            while True:
                heap = self._heap
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                    self._cancelled = max(0, self._cancelled - 1)
                if not heap:
                    self._cond.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                entry = heapq.heappop(heap)[2]
                self._cond.release()
                try:
                    entry.action()
                except Exception:  # an alarm must never kill the timer of every other
                    logger.exception("seerrperf watchdog action failed")
                finally:
                    self._cond.acquire()


_timers = _TimerThread()


def _forget_parent_timers() -> None:
    # The parent's timer thread does not exist in a forked child, and its lock
    # may have been held at the fork: start afresh.
    global _timers
    _timers = _TimerThread()


os.register_at_fork(after_in_child=_forget_parent_timers)


def call_later(seconds: float, action: Callable[[], None]) -> Cancellable:
    """Run ``action`` after ``seconds`` on the process's timer thread.

    For short bookkeeping only (an alarm, a pool's growth decision): every
    timer of the process shares the thread.
    """
    return _timers.call_later(seconds, action)


def ring_later(alarm: SocketAlarm, seconds: float) -> None:
    """Ring ``alarm`` after ``seconds`` from the process's timer thread (sync code)."""
    alarm.set_timer(_timers.call_later(seconds, alarm.ring))


def aring_later(alarm: SocketAlarm, seconds: float) -> None:
    """Ring ``alarm`` after ``seconds`` from the running event loop (async code)."""
    alarm.set_timer(asyncio.get_running_loop().call_later(max(0.0, seconds), alarm.ring))


class Watchdog:
    """Within ``with Watchdog(conn, seconds):``, a query still running after
    ``seconds`` fails at once; afterwards :attr:`fired` tells whether it did.

    Sync code rings from the timer thread; async code passes
    ``on_loop=True`` and rings from its event loop, which is free while the
    task waits on the socket.
    """

    __slots__ = ("_alarm", "_on_loop", "_seconds")

    def __init__(self, conn: _HasPGconn, seconds: float, *, on_loop: bool = False) -> None:
        self._alarm = SocketAlarm(conn)
        self._seconds = seconds
        self._on_loop = on_loop

    @property
    def fired(self) -> bool:
        """Whether the deadline passed with the query still running."""
        return self._alarm.fired

    def __enter__(self) -> Watchdog:
        (aring_later if self._on_loop else ring_later)(self._alarm, self._seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Always disarm, also on cancellation: an alarm left armed would shut
        # down the socket of a connection someone else is using by then.
        self._alarm.stop()


@contextlib.contextmanager
def deadline_scope(deadline: float, clock: Clock = time.monotonic) -> Iterator[None]:
    """Bound every seerrperf pool check run in this context by ``deadline``
    (a value of ``clock``)."""
    token = _deadline.set((deadline, clock))
    try:
        yield
    finally:
        _deadline.reset(token)


def guard_check(
    conn: _HasPGconn, *, on_loop: bool = False
) -> contextlib.AbstractContextManager[object]:
    """A watchdog for a pool's liveness check when a deadline is in force."""
    scope = _deadline.get()
    if scope is None:
        return contextlib.nullcontext()
    deadline, clock = scope
    return Watchdog(conn, deadline - clock(), on_loop=on_loop)
