"""When a pool may open one more connection: growth that fits the server.

psycopg_pool grows eagerly: whenever a request has to queue it opens another
connection, up to ``max_size``. When the queue comes from many short requests
on a server (and a client) that are already busy, every extra connection is
one more process competing for the same cores: throughput falls, and each
connection opened during the burst costs the server a fork. A bigger pool
helps only when connections are the bottleneck, not the work behind them.

:class:`Growth` decides, with no I/O, how many connections the pool may have
(its *limit*, which the pool applies as psycopg_pool's ``max_size``, so
psycopg_pool never grows past it on its own). The pool asks it while
requests wait, every ``grow_after`` seconds:

1. It starts at ``min_size`` (at least one). Nothing grows unless a request
   has been waiting for ``grow_after`` seconds (the pool is full and requests
   queue).
2. **Slow holders**: if the same checkout has held its connection for at
   least ``grow_after`` at two beats in a row, the queue waits on slow work
   (long queries, long transactions, a caller holding one connection while it
   asks for another) that more connections run side by side: one connection
   is added. When the process merely stalled (a busy machine), every holder
   looks slow for one beat, and the stalled one is gone by the next.
3. **Probe**: otherwise every holder is quick, and more connections help only
   if the server has room to spare -- and only a queue that lasts pays for a
   connection opened during it: after :data:`PROBE_AFTER` of queueing without
   a break, one connection is added as a probe: the
   median hold time of the last :data:`WINDOW` checkouts before it is compared
   with the median of the next :data:`WINDOW` once it is open. Under a
   backlog, throughput is connections divided by hold time: unless it rose by
   5 % or more (holds grew by less than ``(n + 1) / n / 1.05``), the
   connection bought nothing, and no probe goes past that size again for
   :data:`CEILING_MEMORY` ``x max_idle`` seconds.
4. **One at a time**: nothing is added while a connection is being opened.
   Nor while the process itself is busy: when a beat runs late by half of
   ``grow_after`` or more, holders are slow because their owners wait for
   the CPU (a burst of new tasks, a saturated client), which more
   connections cannot fix.
5. **Shrinking** stays psycopg_pool's: a connection above ``min_size``
   unused for ``max_idle`` seconds is closed. Every ``max_idle`` seconds the
   limit comes down to what the pool still has, so the next burst is judged
   afresh.

``grow_after=0`` turns the rule off: the limit is ``max_size`` from the
start, and psycopg_pool grows as it always does.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

__all__ = ["CEILING_MEMORY", "PROBE_AFTER", "WINDOW", "Growth", "Sizes"]

WINDOW = 24
"""Checkouts whose hold times make one median in a probe."""

PROBE_AFTER = 1.0
"""Seconds of queueing without a break before quick holders justify a probe."""

CEILING_MEMORY = 10
"""A probe that bought nothing is remembered for this many ``max_idle`` periods."""

_MIN_GAIN = 0.05  # a probe must raise the estimated throughput by this much to stay
_CONGESTED = 0.5  # a beat this late (as a share of grow_after) means the process is busy


@dataclass(frozen=True, slots=True)
class Sizes:
    """What the pool has now: psycopg_pool's count and the connections really open."""

    managed: int  # psycopg_pool's pool_size: open, in use, or being opened
    open: int  # idle in the pool plus checked out


class Growth:
    """The growth rule of one pool (see the module docstring). Not thread-safe
    by itself: the pool calls it under its own lock."""

    __slots__ = (
        "_base",
        "_ceiling",
        "_ceiling_until",
        "_holds",
        "_probe_from",
        "_probe_holds",
        "_slow_holder",
        "enabled",
        "grow_after",
        "grows",
        "limit",
        "max_idle",
        "max_size",
        "min_size",
        "note",
        "reason",
    )

    def __init__(self, min_size: int, max_size: int, grow_after: float, max_idle: float) -> None:
        self.min_size: int = min_size
        self.max_size: int = max_size
        self.grow_after: float = grow_after
        self.max_idle: float = max_idle
        self.enabled: bool = grow_after > 0  # whether the rule is on
        self.limit: int = self._floor() if self.enabled else max_size
        self.grows: int = 0
        self.reason: str = ""  # why the limit last rose, for the pool's log
        self.note: str = ""  # what the last probe found, for the pool's log
        self._holds: deque[float] = deque(maxlen=WINDOW)
        self._probe_from: int | None = None  # the limit a running probe started from
        self._base: float = 0.0  # median hold before the probe
        self._probe_holds: list[float] = []
        self._ceiling: int | None = None
        self._ceiling_until: float = float("-inf")
        self._slow_holder: object = None  # the holder that looked slow at the last beat

    @property
    def probing(self) -> bool:
        """Whether a probe is being measured."""
        return self._probe_from is not None

    def _floor(self) -> int:
        return max(1, self.min_size)

    def resize(self, min_size: int, max_size: int) -> int:
        """New bounds (the user called ``pool.resize``); return the limit to apply."""
        self.min_size, self.max_size = min_size, max_size
        self.limit = min(max(self.limit, self._floor()), max_size) if self.enabled else max_size
        return self.limit

    def returned(self, held: float) -> None:
        """Record how long a connection was held by the checkout that just ended."""
        self._holds.append(held)
        if self._probe_from is not None and len(self._probe_holds) < WINDOW:
            self._probe_holds.append(held)

    def decide(
        self,
        waited: float,
        holder: object,
        oldest_hold: float,
        sizes: Sizes,
        now: float,
        *,
        lag: float = 0.0,
        queued_for: float | None = None,
    ) -> int | None:
        """Return the new limit when one connection is to be added, else ``None``.

        Args:
            waited: How long the longest-waiting request has waited so far.
            holder: Identifies the longest-held connection in use (any
                hashable; ``None`` when none is out).
            oldest_hold: How long that connection has been out.
            sizes: The pool's connections now.
            now: The pool's clock.
            lag: How late this beat ran. A beat late by half of
                ``grow_after`` or more means the process itself is busy (the
                client, not the pool, is the bottleneck): holds are long
                because their owners wait for the CPU, and nothing grows.
            queued_for: How long requests have been waiting without a break
                (``waited`` when not given). A probe needs :data:`PROBE_AFTER`
                of it: a short burst of quick requests is over before a new
                connection could pay for its opening.
        """
        if not self.enabled or waited < self.grow_after or self.limit >= self.max_size:
            return None
        if sizes.managed < self.limit or sizes.open < sizes.managed:
            if self._probe_from is not None:
                self._probe_holds.clear()  # count only what ran with the new connection open
            return None  # a connection is being opened: one at a time
        if lag >= self.grow_after * _CONGESTED:
            self._slow_holder = None
            return None
        typical = statistics.median(self._holds) if self._holds else 0.0
        slow = holder is not None and oldest_hold >= self.grow_after
        seen_before, self._slow_holder = self._slow_holder, holder if slow else None
        if slow and holder == seen_before:
            self._probe_from = None  # slow holders decide, whatever a probe would say
            self.reason = (
                f"a connection has been held {oldest_hold * 1000:.0f} ms "
                f"(recent median {typical * 1000:.1f} ms) while requests wait"
            )
            return self._grow()
        if slow:
            return None  # slow at this beat only so far: wait for the next
        if self._probe_from is not None:
            self._judge_probe(now)
            return None
        if self._ceiling is not None and now < self._ceiling_until and self.limit >= self._ceiling:
            return None
        if (
            len(self._holds) < WINDOW
            or (waited if queued_for is None else queued_for) < PROBE_AFTER
        ):
            return None
        self._probe_from = self.limit
        self._base = typical
        self._probe_holds = []
        self.reason = "probe: requests wait on quick holders; measuring whether one more helps"
        return self._grow()

    def _judge_probe(self, now: float) -> None:
        start = self._probe_from
        assert start is not None
        if len(self._probe_holds) < WINDOW:
            return
        after = statistics.median(self._probe_holds)
        saturated_rise = (start + 1) / start
        self._probe_from = None
        holds = f"median hold {self._base * 1000:.2f} -> {after * 1000:.2f} ms"
        # Under a backlog throughput is connections / hold time: the probe paid
        # off when n + 1 connections hold less than (n + 1) / n times as long.
        if after > self._base * saturated_rise / (1 + _MIN_GAIN):
            # Hold times rose with the connection: the server had no room for it.
            self._ceiling = start
            self._ceiling_until = now + CEILING_MEMORY * self.max_idle
            self.note = (
                f"probe from {start} to {start + 1} connections bought nothing ({holds}); "
                f"no probe past {start + 1} for {CEILING_MEMORY * self.max_idle:g} s"
            )
        else:
            self.note = f"probe from {start} to {start + 1} connections helped ({holds})"

    def idle(self) -> None:
        """Nobody waits any more: a running probe has nothing left to measure."""
        self._probe_from = None
        self._slow_holder = None

    def decay(self, managed: int) -> int | None:
        """Every ``max_idle``: bring the limit down to what the pool still has.

        Returns:
            The new limit when it changes, else ``None``.
        """
        limit = max(self._floor(), managed)
        if not self.enabled or limit >= self.limit:
            return None
        self.limit = limit
        return limit

    def _grow(self) -> int:
        self.grows += 1
        self.limit += 1
        return self.limit
