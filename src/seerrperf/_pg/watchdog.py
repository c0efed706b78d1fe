"""Hard deadlines for queries on a connection, even when the server never answers.

Cancelling a psycopg query makes psycopg ask the server to cancel and wait up
to ten seconds for it; a frozen server or a black-holed network ignores that.
A :class:`Watchdog` instead shuts the connection's socket down at the
deadline, which fails the blocked read at once, and then closes the
connection so no pool ever hands it out again.

A deadline set with :func:`deadline_scope` also bounds the liveness check
that seerrperf's pools run inside ``getconn()`` (see ``pool``): the check
runs in the caller's thread or task, so it sees the context variable. The
deadline is read on the caller's clock; the timer counts what is left of it in
real time.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from seerrperf._runtime import Clock

__all__ = ["Watchdog", "deadline_scope", "guard_check"]

_deadline: contextvars.ContextVar[tuple[float, Clock] | None] = contextvars.ContextVar(
    "seerrperf_deadline", default=None
)


class _PGconn(Protocol):
    @property
    def socket(self) -> int: ...

    def finish(self) -> None: ...


class _HasPGconn(Protocol):
    @property
    def pgconn(self) -> _PGconn: ...


class Watchdog:
    """Within ``with Watchdog(conn, seconds):``, a query still running after
    ``seconds`` fails at once; afterwards :attr:`fired` tells whether it did."""

    def __init__(self, conn: _HasPGconn, seconds: float) -> None:
        self._pgconn = conn.pgconn
        self._fd = self._pgconn.socket
        self._lock = threading.Lock()
        self._finished = False
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.fired = True
            # A duplicate descriptor shares the socket: shutting it down wakes the
            # blocked reader with EOF; closing our copy leaves psycopg's.
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self._fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Always disarm, also on cancellation: a timer left running would shut
        # down the socket of a connection someone else is using by then.
        self._timer.cancel()
        with self._lock:
            self._finished = True
            fired = self.fired
        if fired:
            self._pgconn.finish()  # its socket is shut: never hand it out again


@contextlib.contextmanager
def deadline_scope(deadline: float, clock: Clock = time.monotonic) -> Iterator[None]:
    """Bound every seerrperf pool check run in this context by ``deadline``
    (a value of ``clock``)."""
    token = _deadline.set((deadline, clock))
    try:
        yield
    finally:
        _deadline.reset(token)


def guard_check(conn: _HasPGconn) -> contextlib.AbstractContextManager[object]:
    """A watchdog for a pool's liveness check when a deadline is in force."""
    scope = _deadline.get()
    if scope is None:
        return contextlib.nullcontext()
    deadline, clock = scope
    return Watchdog(conn, deadline - clock())
