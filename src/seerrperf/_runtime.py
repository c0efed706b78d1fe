"""What every subsystem needs from the runtime: clocks, the running loop, detached tasks.

- :data:`Clock`: the type of every ``clock=`` argument (``time.monotonic``
  by default; :class:`seerrperf.testing.FakeClock` in tests).
- :func:`current_loop` / :func:`current_task`: which event loop (asyncio or
  trio, through anyio) and which task is running, by public APIs only.
- :func:`spawn_detached`: start a coroutine that no caller owns, so that
  cancelling a caller never cancels work other callers share.
- :class:`StartSpacer`: start times ``1 / rate`` seconds apart (rate limits).
- :func:`percentile`: the one percentile used in statistics and reports.
- :class:`LatencyHistogram`: durations as cumulative bucket counts (what a
  Prometheus histogram needs) plus a recent window for percentiles.
- :func:`at_fork`: callbacks an object runs around ``os.fork`` (gunicorn
  ``--preload``, multiprocessing's ``fork``), held by weak reference.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextvars
import math
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "DEFAULT_BUCKETS",
    "Clock",
    "HistogramSnapshot",
    "LatencyHistogram",
    "StartSpacer",
    "at_fork",
    "current_loop",
    "current_task",
    "percentile",
    "spawn_detached",
]

Clock: TypeAlias = Callable[[], float]
"""A monotonic clock in seconds, like ``time.monotonic``."""


def current_loop() -> object:
    """Return what identifies the running event loop: the asyncio loop or the trio token.

    Raises:
        RuntimeError: no event loop is running in this thread.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        import trio  # anyio's only other backend; imported only when asyncio is not running
    except ImportError:
        raise RuntimeError("no running event loop") from None
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        raise RuntimeError("no running event loop") from None


def current_task() -> object:
    """Return the running task (an ``asyncio.Task`` or a trio ``Task``).

    Cheaper than ``anyio.get_current_task()``, which builds a ``TaskInfo`` on
    every call: on asyncio this is one C call.

    Raises:
        RuntimeError: no task is running in this thread.
    """
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    if task is not None:
        return task
    import trio.lowlevel  # reached only under trio, which is then installed

    return trio.lowlevel.current_task()


def spawn_detached(
    loop: object,
    run: Callable[[], Coroutine[Any, Any, None]],
    tasks: set[asyncio.Task[None]],
    on_done: Callable[[], None],
) -> None:
    """Run ``run()`` as a task that no caller owns, on ``loop`` (from :func:`current_loop`).

    On asyncio the task is kept in ``tasks`` (a strong reference, so it is not
    garbage-collected mid-flight) until it ends, then ``on_done`` is called,
    also when the task was cancelled before it started. On trio it is a
    system task, which lives until the run ends.
    """
    if isinstance(loop, asyncio.AbstractEventLoop):
        task = loop.create_task(run())
        tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            tasks.discard(finished)
            on_done()

        task.add_done_callback(done)
        return
    import trio

    async def system_task() -> None:
        try:
            await run()
        finally:
            on_done()

    trio.lowlevel.spawn_system_task(system_task, context=contextvars.copy_context())


class StartSpacer:
    """Spaces starts ``1 / per_second`` seconds apart.

    :meth:`reserve` claims the next free start slot without awaiting, so no
    lock is needed within one event loop. An idle spell earns no burst: the
    next call starts at once, the one after it an interval later.
    """

    __slots__ = ("_clock", "_interval", "_next")

    def __init__(self, per_second: float, clock: Clock) -> None:
        self._interval = 1.0 / per_second
        self._clock = clock
        self._next = -math.inf

    def reserve(self) -> float:
        """Claim the next start slot; return how many seconds to wait for it."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        return start - now


def percentile(values: Iterable[float], q: float) -> float:
    """Return the ``q``-th percentile (``q`` from 0 to 100) of ``values``.

    Linear interpolation between the two nearest ranks (NumPy's default), so
    ``percentile(v, 50)`` is the median. ``0.0`` for no values, so that a
    statistics snapshot stays valid JSON.
    """
    ordered = sorted(values)
    if not ordered:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds in seconds (Prometheus' defaults); ``+Inf`` is implied."""


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A consistent copy of a :class:`LatencyHistogram`.

    Attributes:
        buckets: ``(upper bound in seconds, observations <= it)``, cumulative,
            ending with ``(inf, count)``.
        count: Observations in all.
        sum: Their total, in seconds.
        recent: The latest observations (seconds), oldest first, for percentiles.
    """

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float
    recent: tuple[float, ...]


class LatencyHistogram:
    """Durations counted into fixed buckets, plus a window of the latest ones.

    :meth:`observe` costs one bisect and a few additions under a lock, so it
    is safe from threads and cheap next to the request it times. Counts only
    grow (Prometheus counter semantics); the recent window feeds percentiles.

    Args:
        buckets: Increasing upper bounds in seconds.
        window: How many recent observations to keep.
    """

    __slots__ = ("_bounds", "_counts", "_lock", "_recent", "_sum")

    def __init__(self, buckets: Iterable[float] = DEFAULT_BUCKETS, window: int = 2048) -> None:
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """Count one duration of ``seconds``."""
        index = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self._counts[index] += 1
            self._sum += seconds
            self._recent.append(seconds)

    def snapshot(self) -> HistogramSnapshot:
        """Return a consistent copy of the counts."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
            recent = tuple(self._recent)
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return HistogramSnapshot(tuple(cumulative), running, total, recent)


_ForkHook: TypeAlias = Callable[[Any], None]

# id(owner) -> (weak reference to the owner, before, after in parent, after in child).
# A plain dict: copying it is one C call, safe while other threads register.
_fork_hooks: dict[int, tuple[weakref.ref[Any], _ForkHook | None, _ForkHook | None, _ForkHook]] = {}


def at_fork(
    owner: object,
    *,
    before: _ForkHook | None = None,
    after_in_parent: _ForkHook | None = None,
    after_in_child: _ForkHook,
) -> None:
    """Call these functions with ``owner`` around every ``os.fork`` while ``owner`` lives.

    For objects that hold locks or track threads and tasks: ``before`` runs in
    the forking thread just before the fork (take the object's lock, so that
    no other thread is inside its critical section when memory is copied),
    ``after_in_parent`` right after it in the parent (release it), and
    ``after_in_child`` in the child, where only the forking thread exists
    (replace the locks, forget the threads and tasks of the parent). The
    functions take the owner as their argument (pass ``Class.method``), so
    the registration keeps no strong reference to it; it ends when the owner
    is collected. ``before`` must not wait without a deadline.
    """
    key = id(owner)

    def gone(_: weakref.ref[Any]) -> None:
        _fork_hooks.pop(key, None)

    _fork_hooks[key] = (weakref.ref(owner, gone), before, after_in_parent, after_in_child)


def _run_fork_hooks(position: int) -> None:
    error: Exception | None = None
    for ref, *hooks in list(_fork_hooks.copy().values()):
        owner = ref()
        hook = hooks[position]
        if owner is not None and hook is not None:
            try:
                hook(owner)
            except Exception as exc:  # the other owners still get theirs
                error = error or exc
    if error is not None:
        raise error  # reported by Python as an unraisable exception; the fork goes on


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(
        before=lambda: _run_fork_hooks(0),
        after_in_parent=lambda: _run_fork_hooks(1),
        after_in_child=lambda: _run_fork_hooks(2),
    )
