"""psycopg connections with a client-side deadline on every command, and prompt cancellation.

Every command psycopg sends on a connection (``execute``, ``commit``, a
cursor's fetch from the server, the pool's liveness check) is one call of
``Connection.wait``. The classes here arm a :class:`~.watchdog.SocketAlarm`
around each such call: when the server has not answered within
``query_timeout`` seconds, the socket is shut down, the caller gets
:class:`~seerrperf.QueryTimeout` at once, and the connection is closed, so the
pool discards it instead of handing it out again.

Cancelling a query (``asyncio.timeout`` around it, a cancelled task, Ctrl-C)
makes psycopg ask the server to cancel and wait for the answer, up to ten
seconds against a frozen server. Here the server gets :data:`CANCEL_GRACE`
seconds to confirm; after that the socket is shut down and the connection
closed, and the cancellation goes on at once.

Each pool gets its own subclass (:func:`connection_class`), which carries the
pool's ``query_timeout`` and tells the pool how its connection attempts end.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar

import psycopg
from psycopg.rows import TupleRow

from seerrperf._errors import QueryTimeout

from .watchdog import SocketAlarm, aring_later, ring_later

__all__ = [
    "CANCEL_GRACE",
    "AsyncDeadlineConnection",
    "DeadlineConnection",
    "PoolEvents",
    "connection_class",
]

CANCEL_GRACE = 0.5
"""Seconds a server gets to confirm a cancellation before the connection is dropped."""

_RV = TypeVar("_RV")


class PoolEvents(Protocol):
    """What a pool learns from its connections."""

    def connected(self) -> None:
        """A connection attempt succeeded."""

    def connect_failed(self, error: BaseException) -> None:
        """A connection attempt failed with ``error``."""

    def timed_out(self) -> None:
        """A command reached ``query_timeout``; its connection was closed."""


def _timeout_error(seconds: float, events: PoolEvents | None) -> QueryTimeout:
    if events is not None:
        events.timed_out()
    return QueryTimeout(
        f"no answer from the database within {seconds:g} s (query_timeout); "
        "the connection was closed and the pool replaces it"
    )


class DeadlineConnection(psycopg.Connection[TupleRow]):
    """A ``psycopg.Connection`` whose every command ends within ``query_timeout``."""

    query_timeout: ClassVar[float | None] = None
    events: ClassVar[PoolEvents | None] = None
    _alarm: SocketAlarm | None = None

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
        seconds = self.query_timeout
        if seconds is None:
            return super().wait(gen, *args, **kwargs)
        alarm = self._alarm = SocketAlarm(self)
        ring_later(alarm, seconds)
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if alarm.fired:
                raise _timeout_error(seconds, self.events) from exc
            raise
        finally:
            self._alarm = None
            alarm.stop()

    def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        alarm = self._alarm
        if alarm is not None:
            ring_later(alarm, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        super().cancel_safe(timeout=timeout)


class AsyncDeadlineConnection(psycopg.AsyncConnection[TupleRow]):
    """The async twin of :class:`DeadlineConnection`: the event loop rings the alarm."""

    query_timeout: ClassVar[float | None] = None
    events: ClassVar[PoolEvents | None] = None
    _alarm: SocketAlarm | None = None

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
        seconds = self.query_timeout
        if seconds is None:
            return await super().wait(gen, *args, **kwargs)
        alarm = self._alarm = SocketAlarm(self)
        aring_later(alarm, seconds)
        try:
            return await super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if alarm.fired:
                raise _timeout_error(seconds, self.events) from exc
            raise
        finally:
            self._alarm = None
            alarm.stop()

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the running command; give the server :data:`CANCEL_GRACE` s to confirm."""
        alarm = self._alarm
        if alarm is not None:
            aring_later(alarm, CANCEL_GRACE)
            timeout = min(timeout, CANCEL_GRACE)
        await super().cancel_safe(timeout=timeout)


_C = TypeVar("_C", type[DeadlineConnection], type[AsyncDeadlineConnection])


def connection_class(base: _C, query_timeout: float | None, events: PoolEvents) -> _C:
    """Return a subclass of ``base`` for one pool: its deadline and its listener."""
    namespace = {"query_timeout": query_timeout, "events": events, "__module__": base.__module__}
    return type(base.__name__, (base,), namespace)
