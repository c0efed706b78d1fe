"""What every subsystem needs from the runtime: clocks, the running loop, detached tasks.

- :data:`Clock`: the type of every ``clock=`` argument (``time.monotonic``
  by default; :class:`seerrperf.testing.FakeClock` in tests).
- :func:`current_loop` / :func:`current_task`: which event loop (asyncio or
  trio, through anyio) and which task is running, by public APIs only.
- :func:`spawn_detached`: start a coroutine that no caller owns, so that
  cancelling a caller never cancels work other callers share.
- :class:`StartSpacer`: start times ``1 / rate`` seconds apart (rate limits).
- :func:`percentile`: the one percentile used in statistics and reports.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeAlias

__all__ = ["Clock", "StartSpacer", "current_loop", "current_task", "percentile", "spawn_detached"]

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
