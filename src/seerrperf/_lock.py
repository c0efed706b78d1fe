"""A fair per-key lock for one event loop: :class:`AsyncLock` (the advisory lock is in ``_pg``).

Seerr's AsyncLock wakes every waiter of a key on each release and lets the
first one to run win: O(n) wake-ups per release, no FIFO order, no timeout.
Here each key has a record of its holder and a queue of waiters; a release
hands the key straight to the first waiter still waiting (ownership moves
before that waiter even runs), so a newcomer can never overtake it and each
hand-off wakes exactly one task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import ParamSpec, TypeVar

import anyio

from . import _validate
from ._errors import LockTimeout
from ._runtime import current_task

__all__ = ["AsyncLock", "LockStats"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LockStats:
    """A snapshot of a lock's state and counters, from ``stats()``.

    Attributes:
        held_keys: Keys currently held (a key with waiters is always held).
        waiting_tasks: Tasks queued for a key, not counting holders.
        acquisitions: Successful acquisitions since the lock was created.
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


class _Waiter:
    __slots__ = ("gone", "granted", "signal", "task")

    def __init__(self, task: object) -> None:
        self.task = task
        # On asyncio a bare future: anyio.Event() costs several times more,
        # which matters when thousands of tasks queue.
        self.signal: asyncio.Future[None] | anyio.Event = (
            task.get_loop().create_future() if isinstance(task, asyncio.Task) else anyio.Event()
        )
        self.granted = False  # the key was handed to this waiter
        self.gone = False  # gave up; skipped and dropped by the next hand-off

    def wait(self) -> Awaitable[object]:
        signal = self.signal
        return signal if isinstance(signal, asyncio.Future) else signal.wait()

    def wake(self) -> None:
        signal = self.signal
        if not isinstance(signal, asyncio.Future):
            signal.set()
        elif not signal.done():  # done: cancelled along with its task
            signal.set_result(None)


class _WaitQueue(deque[_Waiter]):
    """The waiters of one key, oldest first; departed waiters are removed lazily."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        super().__init__()
        self.gone = 0

    def depart(self, waiter: _Waiter) -> None:
        waiter.gone = True
        self.gone += 1
        # Removing from the middle of a deque is O(n); instead compact once half
        # the entries are departed, which keeps the work per waiter O(1).
        if self.gone * 2 > len(self):
            live = [w for w in self if not w.gone]
            self.clear()
            self.extend(live)
            self.gone = 0


class _Hold:
    """What ``lock(key)`` returns: acquires on enter, releases on exit."""

    __slots__ = ("_key", "_lock", "_timeout")

    def __init__(self, lock: AsyncLock, key: Hashable, timeout: float | None) -> None:
        self._lock = lock
        self._key = key
        self._timeout = timeout

    async def __aenter__(self) -> None:
        lock = self._lock
        owners = lock._owners
        key = self._key
        task = current_task()
        if key not in owners:
            # The fast path: no await, no allocation beyond the dict entry.
            owners[key] = task
            lock._acquisitions += 1
            return
        await lock._wait(key, task, self._timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock._release(self._key)


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
    loop; it is not thread-safe.
    """

    __slots__ = ("_acquisitions", "_contended", "_owners", "_queues", "_timeouts", "_waiting")

    def __init__(self) -> None:
        self._owners: dict[Hashable, object] = {}  # key -> task holding it
        self._queues: dict[Hashable, _WaitQueue] = {}  # only keys that have had waiters
        self._waiting = 0
        self._acquisitions = 0
        self._contended = 0
        self._timeouts = 0

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
            The context manager (``async with lock(key): ...``).

        Raises:
            ConfigurationError: ``timeout`` is negative or not a finite number.
        """
        _validate.duration("timeout", timeout, allow_none=True)
        return _Hold(self, key, timeout)

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
        async with _Hold(self, key, None):
            return await fn(*args, **kwargs)

    def locked(self, key: Hashable) -> bool:
        """Return whether some task holds ``key``."""
        return key in self._owners

    def __len__(self) -> int:
        """Number of keys currently held or waited on."""
        return len(self._owners)

    def stats(self) -> LockStats:
        """Return the current :class:`LockStats`."""
        return LockStats(
            held_keys=len(self._owners),
            waiting_tasks=self._waiting,
            acquisitions=self._acquisitions,
            contended_acquisitions=self._contended,
            timeouts=self._timeouts,
        )

    def statistics(self) -> LockStats:
        """Deprecated alias of :meth:`stats`, removed in the next release."""
        warn_statistics_renamed()
        return self.stats()

    def __repr__(self) -> str:
        return f"<AsyncLock held={len(self._owners)} waiting={self._waiting}>"

    async def _wait(self, key: Hashable, task: object, timeout: float | None) -> None:
        if self._owners[key] is task:
            raise RuntimeError("this task already holds the key (AsyncLock is not re-entrant)")
        if timeout == 0:
            self._timeouts += 1
            raise LockTimeout("the key is held and timeout=0 does not wait")
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _WaitQueue()
        waiter = _Waiter(task)
        queue.append(waiter)
        self._waiting += 1
        try:
            if timeout is None:
                await waiter.wait()
            else:
                with anyio.move_on_after(timeout):
                    await waiter.wait()
        except BaseException:
            # Cancelled (or failed) while waiting. If the key was handed over in
            # the meantime it is ours now: pass it on rather than strand it.
            if waiter.granted:
                self._release(key)
            else:
                self._waiting -= 1
                queue.depart(waiter)
            raise
        if not waiter.granted:
            self._waiting -= 1
            queue.depart(waiter)
            self._timeouts += 1
            raise LockTimeout(f"lock not acquired within {timeout} s")
        self._acquisitions += 1
        self._contended += 1

    def _release(self, key: Hashable) -> None:
        queue = self._queues.get(key) if self._queues else None
        if queue is not None:
            while queue:
                waiter = queue.popleft()
                if waiter.gone:
                    queue.gone -= 1
                    continue
                # Ownership moves now, before the waiter runs, so nobody can
                # take the key in between.
                waiter.granted = True
                self._owners[key] = waiter.task
                self._waiting -= 1
                waiter.wake()
                return
            del self._queues[key]
        del self._owners[key]


def warn_statistics_renamed() -> None:
    """Warn that a lock's ``statistics()`` is now ``stats()`` (one release of grace)."""
    warnings.warn(
        "statistics() is deprecated and will be removed in the next release; call stats()",
        DeprecationWarning,
        stacklevel=3,
    )
