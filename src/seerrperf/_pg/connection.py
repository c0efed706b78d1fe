"""psycopg connections with a client-side deadline on every command, and prompt cancellation.

Every command psycopg sends on a connection (``execute``, ``commit``, a
cursor's fetch from the server, the pool's liveness check) is one call of
``Connection.wait``. The classes here stamp the connection with the command's
deadline for the length of that call, and a sweeper per pool, looking every
tenth of ``query_timeout`` (between 20 ms and 1 s) while the pool has
connections, shuts the socket of any command still unanswered at its
deadline: the caller gets :class:`~seerrperf.QueryTimeout` at once, and the
connection is closed, so the pool discards it instead of handing it out
again. A command costs two attribute stores and a clock read, not a timer.

Cancelling a query (``asyncio.timeout`` around it, a cancelled task, Ctrl-C)
makes psycopg ask the server to cancel and wait for the answer, up to ten
seconds against a frozen server. Here the server gets :data:`CANCEL_GRACE`
seconds to confirm; after that the socket is shut down and the connection
closed, and the cancellation goes on at once.

Each pool gets its own subclass (:func:`connection_class`), which carries the
pool's :class:`Deadlines` and tells the pool how its connection attempts end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from typing import Any, ClassVar, Protocol, TypeVar

import psycopg
from psycopg.rows import TupleRow

from seerrperf._errors import QueryTimeout

from .watchdog import SocketAlarm, aring_later, call_later, ring_later, shut_down

__all__ = [
    "CANCEL_GRACE",
    "AsyncDeadlineConnection",
    "DeadlineConnection",
    "Deadlines",
    "PoolEvents",
    "connection_class",
]

CANCEL_GRACE = 0.5
"""Seconds a server gets to confirm a cancellation before the connection is dropped."""

_SWEEP_MIN, _SWEEP_MAX = 0.02, 1.0  # how often the sweeper looks, at most and at least


class PoolEvents(Protocol):
    """What a pool learns from its connections."""

    def connected(self) -> None:
        """A connection attempt succeeded."""

    def connect_failed(self, error: BaseException) -> None:
        """A connection attempt failed with ``error``."""

    def timed_out(self) -> None:
        """A command reached ``query_timeout``; its connection was closed."""


class Deadlines:
    """One pool's ``query_timeout`` and the sweeper that enforces it on its connections.

    A deadline is met within ``query_timeout`` plus one sweep interval.
    """

    __slots__ = ("_conns", "_lock", "_sweeping", "interval", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.interval = max(_SWEEP_MIN, min(_SWEEP_MAX, seconds / 10))
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._sweeping = False

    def add(self, conn: Any) -> bool:
        """Watch a new connection; return whether the sweeper must be started."""
        with self._lock:
            self._conns.add(conn)
            start = not self._sweeping
            self._sweeping = True
        return start

    def sweep(self) -> bool:
        """Shut down every command past its deadline; return whether to sweep again."""
        now = time.monotonic()
        with self._lock:
            conns = list(self._conns)
            if not conns:
                self._sweeping = False
                return False
        for conn in conns:
            deadline = conn._deadline_at
            if not deadline or now < deadline or conn._shut:
                continue
            # The owner may end the command between our look and the shutdown
            # (sync pools only: the sweeper runs in another thread). The
            # connection then fails its next command and the pool replaces it.
            # Marked first, so the owner woken by the shutdown sees why.
            conn._shut = True
            shut = False
            with contextlib.suppress(Exception):  # closed under our feet: nothing to shut
                shut = shut_down(conn.pgconn)
            if not shut:  # no command in progress (notifies() waits legitimately)
                conn._shut = False
        return True


def _timeout_error(seconds: float, events: PoolEvents | None) -> QueryTimeout:
    if events is not None:
        events.timed_out()
    return QueryTimeout(
        f"no answer from the database within {seconds:g} s (query_timeout); "
        "the connection was closed and the pool replaces it"
    )


def _sweep_later(deadlines: Deadlines) -> None:
    def sweep() -> None:
        if deadlines.sweep():
            call_later(deadlines.interval, sweep)

    call_later(deadlines.interval, sweep)


def _asweep_later(deadlines: Deadlines) -> None:
    loop = asyncio.get_running_loop()

    def sweep() -> None:
        if deadlines.sweep():
            loop.call_later(deadlines.interval, sweep)

    loop.call_later(deadlines.interval, sweep)


class DeadlineConnection(psycopg.Connection[TupleRow]):
    """A ``psycopg.Connection`` whose every command ends within ``query_timeout``."""

    deadlines: ClassVar[Deadlines | None] = None
    events: ClassVar[PoolEvents | None] = None
    _deadline_at = 0.0  # when the command in progress must have been answered; 0: none
    _shut = False  # the sweeper shut the socket down
    _grace: SocketAlarm | None = None

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> Any:  # the signature psycopg gives it
        """Connect as ``psycopg.Connection.connect`` does, telling the pool how it went."""
        events = cls.events
        try:
            conn = super().connect(*args, **kwargs)
        except psycopg.Error as exc:
            if events is not None:
                events.connect_failed(exc)
            raise
        if events is not None:
            events.connected()
        deadlines = cls.deadlines
        if deadlines is not None and deadlines.add(conn):
            _sweep_later(deadlines)
        return conn

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command as psycopg does, within ``query_timeout``."""
        deadlines = self.deadlines
        if deadlines is None:
            return super().wait(gen, *args, **kwargs)
        self._deadline_at = time.monotonic() + deadlines.seconds
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if self._shut:
                raise _timeout_error(deadlines.seconds, self.events) from exc
            raise
        finally:
            self._deadline_at = 0.0
            if self._grace is not None:
                self._shut = self._grace.stop() or self._shut
                self._grace = None
            if self._shut:
                self.pgconn.finish()  # its socket is shut: never hand it out again

    def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        if self._deadline_at and self._grace is None:
            self._grace = SocketAlarm(self)
            ring_later(self._grace, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        super().cancel_safe(timeout=timeout)


class AsyncDeadlineConnection(psycopg.AsyncConnection[TupleRow]):
    """The async twin of :class:`DeadlineConnection`: the event loop sweeps."""

    deadlines: ClassVar[Deadlines | None] = None
    events: ClassVar[PoolEvents | None] = None
    _deadline_at = 0.0
    _shut = False
    _grace: SocketAlarm | None = None

    @classmethod
    async def connect(cls, *args: Any, **kwargs: Any) -> Any:
        """Connect as ``psycopg.AsyncConnection.connect`` does, telling the pool how it went."""
        events = cls.events
        try:
            conn = await super().connect(*args, **kwargs)
        except psycopg.Error as exc:
            if events is not None:
                events.connect_failed(exc)
            raise
        if events is not None:
            events.connected()
        deadlines = cls.deadlines
        if deadlines is not None and deadlines.add(conn):
            _asweep_later(deadlines)
        return conn

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command as psycopg does, within ``query_timeout``."""
        deadlines = self.deadlines
        if deadlines is None:
            return await super().wait(gen, *args, **kwargs)
        self._deadline_at = time.monotonic() + deadlines.seconds
        try:
            return await super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if self._shut:
                raise _timeout_error(deadlines.seconds, self.events) from exc
            raise
        finally:
            self._deadline_at = 0.0
            if self._grace is not None:
                self._shut = self._grace.stop() or self._shut
                self._grace = None
            if self._shut:
                self.pgconn.finish()  # its socket is shut: never hand it out again

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        if self._deadline_at and self._grace is None:
            self._grace = SocketAlarm(self)
            aring_later(self._grace, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        await super().cancel_safe(timeout=timeout)


_C = TypeVar("_C", type[DeadlineConnection], type[AsyncDeadlineConnection])


def connection_class(base: _C, query_timeout: float | None, events: PoolEvents) -> _C:
    """Return a subclass of ``base`` for one pool: its deadlines and its listener."""
    deadlines = Deadlines(query_timeout) if query_timeout is not None else None
    namespace = {"deadlines": deadlines, "events": events, "__module__": base.__module__}
    return type(base.__name__, (base,), namespace)
