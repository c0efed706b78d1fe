"""seerrperf._runtime: the one percentile, the latency histogram, loop and task detection."""

from __future__ import annotations

import asyncio
import math
import threading

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seerrperf._runtime import (
    LatencyHistogram,
    current_loop,
    current_task,
    percentile,
    spawn_detached,
)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 0) == 1.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_stays_within_the_values(values: list[float], q: float) -> None:
    assert min(values) <= percentile(values, q) <= max(values)


def test_histogram_counts_cumulatively_and_keeps_a_window() -> None:
    histogram = LatencyHistogram(buckets=(0.1, 1.0), window=2)
    for seconds in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(seconds)
    snap = histogram.snapshot()
    assert snap.buckets == ((0.1, 2), (1.0, 3), (math.inf, 4))  # le: 0.1 counts 0.1 itself
    assert snap.count == 4
    assert snap.sum == pytest.approx(3.65)
    assert snap.recent == (0.5, 3.0)


def test_histogram_counts_every_observation_from_threads() -> None:
    histogram = LatencyHistogram()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait(timeout=10)
        for _ in range(2_000):
            histogram.observe(0.02)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert histogram.snapshot().count == 16_000


def test_no_loop_outside_async_code() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        current_loop()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_detached_work_outlives_a_cancelled_caller(anyio_backend: str) -> None:
    tasks: set[asyncio.Task[None]] = set()
    started, finished, cleaned = anyio.Event(), anyio.Event(), anyio.Event()
    release = anyio.Event()
    caller = current_task()

    async def work() -> None:
        assert current_task() is not caller
        started.set()
        await release.wait()
        finished.set()

    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            spawn_detached(current_loop(), work, tasks, cleaned.set)
            await started.wait()
            scope.cancel()  # the caller gives up; the detached work goes on
            await anyio.sleep_forever()
        release.set()
        await finished.wait()
        await cleaned.wait()
    assert not tasks
