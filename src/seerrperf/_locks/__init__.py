"""In-process per-key locks: :class:`KeyedLock` (threads) and :class:`AsyncLock` (tasks).

Both are faces of one piece of bookkeeping (:mod:`.handoff`): who holds each
key, who waits for it in which order, and the counters behind
:class:`LockStats`. They differ only in how a waiter sleeps and is woken. The
advisory locks across processes are in ``seerrperf._pg.advisory``; each
queues the tasks or threads of its process on one of these.
"""

from __future__ import annotations

from .asynclock import AsyncLock
from .handoff import LockStats, waited, warn_statistics_renamed
from .keyed import KeyedLock

__all__ = ["AsyncLock", "KeyedLock", "LockStats", "waited", "warn_statistics_renamed"]
