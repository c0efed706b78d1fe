"""psycopg connections with a client-side deadline on every command, and prompt cancellation.

Every command psycopg sends on a connection (``execute``, ``commit``, a
cursor's fetch from the server, the pool's liveness check) is one call of
``Connection.wait``. The classes here register each such call with their
pool's :class:`InFlight`, and a sweeper, running only while commands are in
flight, shuts the socket of any command still unanswered after
``query_timeout`` seconds: the caller gets :class:`~seerrperf.QueryTimeout`
at once, and the connection is closed, so the pool discards it instead of
handing it out again. Registering costs two dictionary operations under an
uncontended lock, not a timer per command: short queries stay fast.

Cancelling a query (``asyncio.timeout`` around it, a cancelled task, Ctrl-C)
makes psycopg ask the server to cancel and wait for the answer, up to ten
seconds against a frozen server. Here the server gets :data:`CANCEL_GRACE`
seconds to confirm; after that the socket is shut down and the connection
closed, and the cancellation goes on at once.

Each pool gets its own subclass (:func:`connection_class`), which carries the
pool's :class:`InFlight` and tells the pool how its connection attempts end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar, Protocol, TypeVar

import psycopg
from psycopg.rows import TupleRow

from seerrperf._errors import QueryTimeout

from .watchdog import SocketAlarm, aring_later, call_later, ring_later, shut_down

__all__ = [
    "CANCEL_GRACE",
    "AsyncDeadlineConnection",
    "DeadlineConnection",
    "InFlight",
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


class InFlight:
    """The commands in flight on one pool's connections, each with its deadline.

    A deadline is met within ``query_timeout`` plus one sweep interval (a
    tenth of it, between 20 ms and 1 s).
    """

    __slots__ = ("_deadlines", "_fired", "_lock", "_sweeping", "interval", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.interval = max(_SWEEP_MIN, min(_SWEEP_MAX, seconds / 10))
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, Any]] = {}  # id(conn) -> (deadline, conn)
        self._fired: set[int] = set()
        self._sweeping = False

    def start(self, conn: Any) -> bool:
        """A command starts on ``conn``; return whether the sweeper must be started."""
        deadline = time.monotonic() + self.seconds
        with self._lock:
            self._deadlines[id(conn)] = (deadline, conn)
            start_sweeper = not self._sweeping
            self._sweeping = True
        return start_sweeper

    def end(self, conn: Any) -> bool:
        """The command on ``conn`` ended; return whether its deadline shut it down."""
        key = id(conn)
        with self._lock:
            del self._deadlines[key]
            if not self._fired:
                return False
            fired = key in self._fired
            self._fired.discard(key)
        return fired

    def sweep(self) -> bool:
        """Shut down what is past its deadline; return whether to sweep again."""
        now = time.monotonic()
        with self._lock:
            for key, (deadline, conn) in self._deadlines.items():
                if now < deadline or key in self._fired:
                    continue
                try:
                    if shut_down(conn.pgconn):
                        self._fired.add(key)
                except Exception:  # closed under our feet by psycopg itself: nothing to shut
                    continue
            if not self._deadlines:
                self._sweeping = False
                return False
        return True


def _timeout_error(seconds: float, events: PoolEvents | None) -> QueryTimeout:
    if events is not None:
        events.timed_out()
    return QueryTimeout(
        f"no answer from the database within {seconds:g} s (query_timeout); "
        "the connection was closed and the pool replaces it"
    )


def _sweep_later(inflight: InFlight) -> None:
    def sweep() -> None:
        if inflight.sweep():
            call_later(inflight.interval, sweep)

    call_later(inflight.interval, sweep)


def _asweep_later(inflight: InFlight) -> None:
    loop = asyncio.get_running_loop()

    def sweep() -> None:
        if inflight.sweep():
            loop.call_later(inflight.interval, sweep)

    loop.call_later(inflight.interval, sweep)


class DeadlineConnection(psycopg.Connection[TupleRow]):
    """A ``psycopg.Connection`` whose every command ends within ``query_timeout``."""

    inflight: ClassVar[InFlight | None] = None
    events: ClassVar[PoolEvents | None] = None
    _waiting = False
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
        return conn

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command as psycopg does, within ``query_timeout``."""
        inflight = self.inflight
        if inflight is None:
            return super().wait(gen, *args, **kwargs)
        if inflight.start(self):
            _sweep_later(inflight)
        self._waiting = True
        fired = False
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            fired = inflight.end(self)
            self._waiting = False
            if fired:
                raise _timeout_error(inflight.seconds, self.events) from exc
            raise
        finally:
            if self._waiting:
                self._waiting = False
                fired = inflight.end(self)
            if self._grace is not None:
                fired = self._grace.stop() or fired
                self._grace = None
            if fired:
                self.pgconn.finish()  # its socket is shut: never hand it out again

    def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        if self._waiting and self._grace is None:
            self._grace = SocketAlarm(self)
            ring_later(self._grace, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        super().cancel_safe(timeout=timeout)


class AsyncDeadlineConnection(psycopg.AsyncConnection[TupleRow]):
    """The async twin of :class:`DeadlineConnection`: the event loop sweeps."""

    inflight: ClassVar[InFlight | None] = None
    events: ClassVar[PoolEvents | None] = None
    _waiting = False
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
        return conn

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one command as psycopg does, within ``query_timeout``."""
        inflight = self.inflight
        if inflight is None:
            return await super().wait(gen, *args, **kwargs)
        if inflight.start(self):
            _asweep_later(inflight)
        self._waiting = True
        fired = False
        try:
            return await super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            fired = inflight.end(self)
            self._waiting = False
            if fired:
                raise _timeout_error(inflight.seconds, self.events) from exc
            raise
        finally:
            if self._waiting:
                self._waiting = False
                fired = inflight.end(self)
            if self._grace is not None:
                fired = self._grace.stop() or fired
                self._grace = None
            if fired:
                self.pgconn.finish()  # its socket is shut: never hand it out again

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        if self._waiting and self._grace is None:
            self._grace = SocketAlarm(self)
            aring_later(self._grace, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        await super().cancel_safe(timeout=timeout)


_C = TypeVar("_C", type[DeadlineConnection], type[AsyncDeadlineConnection])


def connection_class(base: _C, query_timeout: float | None, events: PoolEvents) -> _C:
    """Return a subclass of ``base`` for one pool: its deadlines and its listener."""
    inflight = InFlight(query_timeout) if query_timeout is not None else None
    namespace = {"inflight": inflight, "events": events, "__module__": base.__module__}
    return type(base.__name__, (base,), namespace)
