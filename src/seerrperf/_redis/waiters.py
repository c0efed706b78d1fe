"""Callers waiting for another process's load, woken by an invalidation message.

A caller registers its waiter *before* the lookup that tells it to wait and
clears it before each lookup, so a message that arrives during the round trip
is not lost: the wait then returns at once. The subscriber thread wakes
waiters by key, by cache (a clear) or all of them (a flush, a resync); a wait
also ends on its deadline, when the holder's lease would expire, so a lost
message costs time, never correctness.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import anyio

from seerrperf._runtime import current_loop

__all__ = ["TaskWaiter", "ThreadWaiter", "Waiter", "Waiters"]


class ThreadWaiter:
    """A waiting thread."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups (before a lookup)."""
        self._event.clear()

    def wake(self) -> None:
        """Wake it; safe from any thread."""
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return whether it was woken."""
        return self._event.wait(seconds)


class TaskWaiter:
    """A waiting task, on asyncio or trio; woken from any thread."""

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._loop = current_loop()
        self._event = anyio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups (before a lookup); call it from the task's loop."""
        if self._event.is_set():
            self._event = anyio.Event()

    def wake(self) -> None:
        """Wake it; safe from any thread, also after its loop has ended."""
        event = self._event
        try:
            if isinstance(self._loop, asyncio.AbstractEventLoop):
                self._loop.call_soon_threadsafe(event.set)
            else:
                self._loop.run_sync_soon(event.set)  # type: ignore[attr-defined]  # a TrioToken
        except RuntimeError:  # the loop is closed, or the trio run is over: nobody waits
            pass

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return whether it was woken."""
        with anyio.move_on_after(seconds):
            await self._event.wait()
        return self._event.is_set()


Waiter = ThreadWaiter | TaskWaiter


class Waiters:
    """Every waiter of one process, by cache and key digest."""

    __slots__ = ("_by_key", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], set[Waiter]] = {}

    def add(self, cache: str, key_digest: str, waiter: Waiter) -> None:
        """Register ``waiter`` for a key."""
        with self._lock:
            self._by_key.setdefault((cache, key_digest), set()).add(waiter)

    def remove(self, cache: str, key_digest: str, waiter: Waiter) -> None:
        """Unregister ``waiter``."""
        with self._lock:
            waiting = self._by_key.get((cache, key_digest))
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._by_key[(cache, key_digest)]

    def wake_keys(self, cache: str, digests: Iterable[str]) -> None:
        """Wake the waiters of these keys."""
        with self._lock:
            found = [w for d in digests for w in self._by_key.get((cache, d), ())]
        for waiter in found:
            waiter.wake()

    def wake_cache(self, cache: str | None) -> None:
        """Wake every waiter of ``cache`` (every waiter when ``None``)."""
        with self._lock:
            found = [
                w
                for (name, _), waiting in self._by_key.items()
                if cache is None or name == cache
                for w in waiting
            ]
        for waiter in found:
            waiter.wake()

    def reset(self) -> None:
        """Forget every waiter, with a new lock (a forked child has none)."""
        self._lock = threading.Lock()
        self._by_key = {}
