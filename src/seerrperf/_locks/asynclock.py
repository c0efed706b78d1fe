"""A fair per-key lock for one event loop: :class:`AsyncLock`, the task face of ``HandOff``."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import ParamSpec, TypeVar

import anyio

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, LockTimeout
from seerrperf._runtime import current_task

from .handoff import HandOff, LockStats, Ticket, live, warn_statistics_renamed

__all__ = ["AsyncLock"]

P = ParamSpec("P")
T = TypeVar("T")

_new = object.__new__
_asyncio_current_task = asyncio.current_task
_IN_USE = "this lock(key) is already in use: call lock(key) for each block"


class _Hold(Ticket):
    """What ``lock(key)`` returns: a ticket that acquires on enter and releases on exit."""

    __slots__ = ("_lock", "_timeout", "signal")

    _lock: AsyncLock
    _timeout: float | None
    # On asyncio a bare future: anyio.Event() costs several times more, which
    # matters when thousands of tasks queue.
    signal: asyncio.Future[None] | anyio.Event

    async def __aenter__(self) -> None:
        if self.owner is not None:
            raise RuntimeError(_IN_USE)
        try:
            task: object = _asyncio_current_task()  # one C call: the hot path
        except RuntimeError:  # no asyncio loop running: trio
            task = None
        if task is None:
            task = current_task()
        self.owner = task
        self.waited = False
        try:
            if self._lock._owners.setdefault(self.key, self) is self:
                # The fast path: no await, no allocation beyond the dict entry.
                return
        except TypeError:
            self.owner = None
            raise ConfigurationError(
                f"key must be hashable, got {type(self.key).__name__}"
            ) from None
        try:
            await self._lock._wait(self, task)
        except BaseException:
            self.owner = None  # not held: the block does not run
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock = self._lock
        table = lock._table
        self.owner = None
        if table.queues or self.waited:
            _wake(table.release(self))
        else:  # HandOff.release for a key nobody waits for, inlined: the hot path
            del lock._owners[self.key]
            table.counted += 1

    def wait(self) -> Awaitable[object]:
        signal = self.signal
        return signal if isinstance(signal, asyncio.Future) else signal.wait()


def _wake(ticket: Ticket | None) -> None:
    if ticket is None:
        return
    assert isinstance(ticket, _Hold)
    signal = ticket.signal
    if not isinstance(signal, asyncio.Future):
        signal.set()
    elif not signal.done():  # done: cancelled along with its task
        signal.set_result(None)


class AsyncLock:
    """A fair lock per key, for asyncio and trio (through anyio).

    ::

        lock = AsyncLock()

        async with lock(("movie", 603), timeout=2.0):
            if not await find_active_request("movie", 603):
                await create_request("movie", 603)

    Guarantees, per key: one holder at a time; waiters get the key in the
    order they asked for it (a newcomer never overtakes a waiter); a release
    wakes one waiter, never all; a waiter that is cancelled or times out
    leaves the queue, and one cancelled just after being handed the key
    passes it on; a holder that fails or is cancelled releases; a key with no
    holder and no waiter is forgotten, so many distinct keys use no memory
    once released.

    Like ``asyncio.Lock``, an uncontended acquisition does not yield to the
    event loop; a contended one waits, which is a cancellation point.

    The lock is not re-entrant: a task that asks again for a key it holds
    gets ``RuntimeError`` instead of deadlocking. Use one instance per event
    loop; it is not thread-safe (:class:`~seerrperf.KeyedLock` is its thread
    twin). In a child process forked while tasks of another thread held or
    awaited keys, those tasks are forgotten: they do not exist there.
    """

    __slots__ = ("__weakref__", "_owners", "_table")

    def __init__(self) -> None:
        self._table = HandOff()
        self._owners = self._table.owners
        _LIVE.add(self)

    def __call__(
        self, key: Hashable, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Return an async context manager that holds ``key`` inside its block.

        Args:
            key: Any hashable value; prefer tuples such as ``("movie", 603)``
                so a movie and a show with the same id are different keys.
            timeout: Seconds to wait for the key; ``None`` waits as long as it
                takes, ``0`` only takes a free key.

        Returns:
            The context manager: ``async with lock(key) as held:`` (``held``
            is ``None``; an advisory lock gives its connection there). Use
            each one for one block at a time.

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

    async def dispatch(
        self, key: Hashable, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``await fn(*args, **kwargs)`` while holding ``key``.

        Args:
            key: The key to hold, as for ``lock(key)``.
            fn: A coroutine function.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returns.

        Raises:
            ConfigurationError: ``fn`` cannot be called.
            RuntimeError: The current task already holds ``key``.
        """
        _validate.function("fn", fn, "a coroutine function")
        async with self(key):
            return await fn(*args, **kwargs)

    def locked(self, key: Hashable) -> bool:
        """Return whether some task holds ``key``."""
        return key in self._owners

    def __len__(self) -> int:
        """Number of keys currently held or waited on."""
        return len(self._owners)

    def stats(self) -> LockStats:
        """Return the current :class:`LockStats`."""
        return self._table.stats()

    def statistics(self) -> LockStats:
        """Deprecated alias of :meth:`stats`, removed in the next release."""
        warn_statistics_renamed()
        return self.stats()

    def __repr__(self) -> str:
        return f"<AsyncLock held={len(self._owners)} waiting={self._table.waiting}>"

    async def _wait(self, hold: _Hold, task: object) -> None:
        table = self._table
        holder = table.holder(hold.key)
        assert holder is not None
        if holder.owner is task:
            raise RuntimeError("this task already holds the key (AsyncLock is not re-entrant)")
        timeout = hold._timeout
        if timeout == 0:
            table.count_timeout()
            raise LockTimeout("the key is held and timeout=0 does not wait")
        hold.signal = (
            task.get_loop().create_future() if isinstance(task, asyncio.Task) else anyio.Event()
        )
        table.enqueue(hold)
        try:
            if timeout is None:
                await hold.wait()
            else:
                with anyio.move_on_after(timeout):
                    await hold.wait()
        except BaseException:
            # Cancelled (or failed) while waiting. If the key was handed over in
            # the meantime it is ours now: pass it on rather than strand it.
            if table.withdraw(hold, timed_out=False):
                _wake(table.give_back(hold))
            raise
        if not hold.granted:
            table.withdraw(hold, timed_out=True)
            raise LockTimeout(f"lock not acquired within {timeout} s")


_LIVE: weakref.WeakSet[AsyncLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Only the forking thread survives a fork; its event loop, if it is running
    # one, goes on in the child. Tasks of any other loop never run again here.
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def exists(ticket: Ticket) -> bool:
        owner = ticket.owner
        return loop is not None and isinstance(owner, asyncio.Task) and owner.get_loop() is loop

    for lock in live(_LIVE):
        for ticket in lock._table.forget(exists):
            _wake(ticket)


os.register_at_fork(after_in_child=_after_fork_in_child)
