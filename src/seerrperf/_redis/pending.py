"""Invalidations Redis has not seen because it was unreachable; replayed when it is back. No I/O.

A ``delete`` (or a ``set``, which must not leave the old value readable
elsewhere), a ``clear`` or a ``flush`` made during an outage only reached this
process's own tier. When Redis answers again they are applied there before
anything else is read from it, so no process serves a value that was
invalidated while Redis was away. Bounded: past ``limit`` deletes, the whole
namespace is flushed instead, which is always correct.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Backlog", "Pending"]


@dataclass(slots=True)
class Backlog:
    """What to replay: a flush supersedes everything; a clear supersedes its deletes."""

    flush: bool = False
    clears: set[str] = field(default_factory=set)
    deletes: dict[str, set[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.flush or bool(self.clears) or bool(self.deletes)


class Pending:
    """The backlog of one process; safe from any thread.

    Args:
        limit: Most key deletes kept before the backlog becomes a flush.
    """

    __slots__ = ("_backlog", "_count", "_lock", "limit")

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._backlog = Backlog()
        self._count = 0

    def __bool__(self) -> bool:
        return bool(self._backlog)

    def delete(self, cache: str, digests: Iterable[str]) -> None:
        """Remember that these keys were deleted (or set) locally."""
        with self._lock:
            backlog = self._backlog
            if backlog.flush or cache in backlog.clears:
                return
            keys = backlog.deletes.setdefault(cache, set())
            before = len(keys)
            keys.update(digests)
            self._count += len(keys) - before
            if self._count > self.limit:
                self._backlog, self._count = Backlog(flush=True), 0

    def clear(self, cache: str) -> None:
        """Remember that ``cache`` was cleared locally."""
        with self._lock:
            backlog = self._backlog
            if backlog.flush:
                return
            self._count -= len(backlog.deletes.pop(cache, ()))
            backlog.clears.add(cache)

    def flush(self) -> None:
        """Remember that the whole namespace was flushed locally."""
        with self._lock:
            self._backlog, self._count = Backlog(flush=True), 0

    def take(self) -> Backlog:
        """Return the backlog and start a new one (hand it back with :meth:`restore`)."""
        with self._lock:
            backlog, self._backlog, self._count = self._backlog, Backlog(), 0
            return backlog

    def restore(self, backlog: Backlog) -> None:
        """Merge back a backlog whose replay failed."""
        if backlog.flush:
            self.flush()
            return
        for cache in backlog.clears:
            self.clear(cache)
        for cache, digests in backlog.deletes.items():
            self.delete(cache, digests)

    def reset(self) -> None:
        """Forget everything, with a new lock (a forked child: the parent replays its own)."""
        self._lock = threading.Lock()
        self._backlog, self._count = Backlog(), 0
