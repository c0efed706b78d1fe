"""AsyncLock on asyncio and trio, on virtual time.

Every test runs on both backends with a virtual clock: asyncio on a loop
whose clock jumps to the next timer whenever nothing is ready, trio on
``MockClock(autojump_threshold=0)``. Timeouts and hold times therefore cost
no real time and every schedule is reproducible.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import selectors
import tracemalloc
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

import seerrperf
from seerrperf import AsyncLock, ConfigurationError, LockStats, LockTimeout, SeerrperfError

P = ParamSpec("P")

# --- a virtual clock for asyncio ----------------------------------------------------------


class _JumpingSelector(selectors.DefaultSelector):
    """Never blocks: when nothing is ready it advances the loop's clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready: list[tuple[Any, int]] = super().select(0)
        if not ready and timeout:
            self.now += timeout
        elif not ready and timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is due")
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time, like trio's autojumping MockClock."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Every AsyncLock test runs on both backends, on virtual time."""
    if request.param == "asyncio":
        return ("asyncio", {"loop_factory": VirtualTimeLoop})
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


class Boom(Exception):
    pass


def fails_instead_of_hanging(test: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """On virtual time a deadlock jumps straight to this deadline and fails."""

    @functools.wraps(test)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        with anyio.fail_after(3600):
            await test(*args, **kwargs)

    return guarded


# --- AsyncLock: behaviour ------------------------------------------------------------------


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_one_holder_per_key_and_keys_are_independent() -> None:
    lock = AsyncLock()
    async with lock(("movie", 603)):
        assert lock.locked(("movie", 603))
        assert not lock.locked(("tv", 603))
        async with lock(("tv", 603)):  # another key: no waiting
            assert len(lock) == 2
        async with anyio.create_task_group() as tg:  # another task cannot have it
            tg.start_soon(_expect_timeout, lock, ("movie", 603), 0)
    assert len(lock) == 0
    assert not lock.locked(("movie", 603))


async def _enter(lock: AsyncLock, key: object, timeout: float | None) -> None:
    async with lock(key, timeout=timeout):
        pass


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_statistics_count_acquisitions_contention_and_timeouts() -> None:
    lock = AsyncLock()
    async with anyio.create_task_group() as tg:
        async with lock("k"):
            tg.start_soon(_enter, lock, "k", None)
            tg.start_soon(_enter, lock, "k", None)
            await anyio.wait_all_tasks_blocked()
            stats = lock.stats()
            assert (stats.held_keys, stats.waiting_tasks) == (1, 2)
            tg.start_soon(_expect_timeout, lock, "k", 5)
            await anyio.sleep(6)  # virtual
    stats = lock.stats()
    assert stats == LockStats(
        held_keys=0, waiting_tasks=0, acquisitions=3, contended_acquisitions=2, timeouts=1
    )
    assert stats.as_dict() == {
        "held_keys": 0,
        "waiting_tasks": 0,
        "acquisitions": 3,
        "contended_acquisitions": 2,
        "timeouts": 1,
    }
    assert repr(lock) == "<AsyncLock held=0 waiting=0>"


@pytest.mark.anyio
async def test_statistics_is_a_deprecated_alias_of_stats() -> None:
    lock = AsyncLock()
    async with lock("k"):
        with pytest.warns(DeprecationWarning, match=r"statistics\(\) is deprecated.*stats") as w:
            old = lock.statistics()
        assert old == lock.stats()
        assert old.held_keys == 1
    assert w[0].filename == __file__  # the warning points at the caller


def test_lock_statistics_is_a_deprecated_alias_of_lock_stats() -> None:
    with pytest.warns(DeprecationWarning, match="LockStatistics is deprecated.*LockStats"):
        alias = seerrperf.LockStatistics
    assert alias is LockStats
    with pytest.warns(DeprecationWarning, match="LockStatistics"):
        from seerrperf import LockStatistics
    assert LockStatistics is LockStats


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_dispatch_runs_under_the_lock_and_returns_the_result() -> None:
    lock = AsyncLock()

    async def work(a: int, *, b: int) -> int:
        assert lock.locked("k")
        return a + b

    assert await lock.dispatch("k", work, 1, b=2) == 3
    assert len(lock) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_failing_holder_releases() -> None:
    lock = AsyncLock()
    with pytest.raises(Boom):
        async with lock("k"):
            raise Boom
    assert len(lock) == 0
    with pytest.raises(Boom):
        await lock.dispatch("k", _raise_boom)
    async with lock("k", timeout=0):
        pass


async def _raise_boom() -> None:
    raise Boom


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_cancelled_holder_releases_to_the_next_waiter() -> None:
    lock = AsyncLock()
    got: list[str] = []

    async def holder(scope: anyio.CancelScope) -> None:
        with scope:
            async with lock("k"):
                got.append("holder")
                await anyio.sleep_forever()

    async def waiter() -> None:
        async with lock("k"):
            got.append("waiter")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder, scope)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert got == ["holder", "waiter"]
    assert len(lock) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_reacquiring_a_held_key_raises_instead_of_deadlocking() -> None:
    lock = AsyncLock()
    async with anyio.create_task_group() as tg, lock("k"):
        tg.start_soon(_enter, lock, "k", None)  # a queued waiter changes nothing
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="not re-entrant"):
            async with lock("k"):
                pass
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await lock.dispatch("k", anyio.lowlevel.checkpoint)
        assert lock.stats().waiting_tasks == 1
    assert len(lock) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_child_task_of_the_holder_waits_instead_of_raising() -> None:
    lock = AsyncLock()
    got: list[str] = []

    async def child() -> None:
        async with lock("k"):
            got.append("child")

    async with anyio.create_task_group() as tg:
        async with lock("k"):
            tg.start_soon(child)
            await anyio.wait_all_tasks_blocked()
            got.append("parent")
    assert got == ["parent", "child"]


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_timed_out_waiter_leaves_the_queue() -> None:
    lock = AsyncLock()
    got: list[str] = []
    errors: list[tuple[BaseException, float]] = []

    async def impatient() -> None:
        start = anyio.current_time()
        try:
            await _enter(lock, "k", 1.5)
        except LockTimeout as exc:
            errors.append((exc, anyio.current_time() - start))

    async def patient() -> None:
        async with lock("k"):
            got.append("patient")

    async with anyio.create_task_group() as tg:
        async with lock("k"):
            tg.start_soon(impatient)
            tg.start_soon(patient)
            await anyio.wait_all_tasks_blocked()
            assert lock.stats().waiting_tasks == 2
            await anyio.sleep(2)  # virtual
            assert lock.stats().waiting_tasks == 1
    [(error, waited)] = errors
    assert waited == pytest.approx(1.5)
    assert "within 1.5 s" in str(error)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, SeerrperfError)
    assert got == ["patient"]
    assert lock.stats().timeouts == 1
    assert len(lock) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_timeout_zero_takes_only_a_free_key() -> None:
    lock = AsyncLock()
    waited: list[float] = []

    async def try_lock() -> None:
        start = anyio.current_time()
        with pytest.raises(LockTimeout, match="timeout=0"):
            await _enter(lock, "k", 0)
        waited.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg, lock("k", timeout=0):
        tg.start_soon(try_lock)
        await anyio.wait_all_tasks_blocked()
    assert waited == [0]
    assert lock.stats().timeouts == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_a_bad_timeout_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be"):
        AsyncLock()("k", timeout=bad)


@pytest.mark.anyio
async def test_dispatch_refuses_what_cannot_be_called_before_taking_the_key() -> None:
    lock = AsyncLock()
    with pytest.raises(ConfigurationError, match="fn must be a coroutine function, got int"):
        await lock.dispatch("k", 42)  # type: ignore[arg-type]
    assert lock.stats().acquisitions == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_waiter_cancelled_after_the_hand_off_passes_the_key_on() -> None:
    # The first waiter is cancelled and the holder releases in the same step:
    # the key goes to that waiter (it has not run yet), which must pass it on.
    lock = AsyncLock()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with lock("k"):
                got.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        async with lock("k"):
            tg.start_soon(waiter, "first", first)
            tg.start_soon(waiter, "second", second)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
        assert lock.locked("k")  # handed to "first", which has not run yet
    assert got == ["second"]
    assert first.cancelled_caught
    assert len(lock) == 0
    assert lock.stats().waiting_tasks == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_a_newcomer_never_overtakes_a_woken_waiter() -> None:
    lock = AsyncLock()
    got: list[str] = []

    async def waiter() -> None:
        async with lock("k"):
            got.append("waiter")

    async with anyio.create_task_group() as tg:
        async with lock("k"):
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
        # Released; the waiter owns the key before it has even run.
        assert got == []
        with pytest.raises(LockTimeout):
            await _enter(lock, "k", 0)
    assert got == ["waiter"]


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_10000_waiters_on_one_key_drain_in_fifo_order() -> None:
    lock = AsyncLock()
    asked: list[int] = []
    got: list[int] = []

    async def waiter(i: int) -> None:
        asked.append(i)
        async with lock("k"):
            got.append(i)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        async with lock("k"):
            for i in range(10_000):
                tg.start_soon(waiter, i)
            await anyio.wait_all_tasks_blocked()
            assert lock.stats().waiting_tasks == 10_000
    assert len(got) == 10_000
    assert got == asked
    assert len(lock) == 0


class Key:
    """A key hashed by identity that a weak reference can watch."""


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_released_keys_are_forgotten() -> None:
    lock = AsyncLock()
    keys = [Key() for _ in range(10_000)]
    for key in keys:
        async with lock(key):
            pass
    contended = Key()
    async with anyio.create_task_group() as tg:
        async with lock(contended):
            tg.start_soon(_enter, lock, contended, None)
            await anyio.wait_all_tasks_blocked()
            assert lock.stats().waiting_tasks == 1
    refs = [weakref.ref(k) for k in (*keys, contended)]
    del keys, key, contended
    gc.collect()
    assert len(lock) == 0
    # Neither the holders nor the wait queues keep any key alive.
    assert sum(ref() is not None for ref in refs) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_departed_waiters_do_not_pile_up_behind_a_long_holder() -> None:
    lock = AsyncLock()
    traced: list[int] = []
    tracemalloc.start()
    try:
        async with anyio.create_task_group() as tg:
            async with lock("k"):
                for round_ in range(50):
                    for _ in range(20):
                        tg.start_soon(_expect_timeout, lock, "k", 1)
                    await anyio.sleep(2)  # virtual: all 20 time out
                    if round_ in (9, 49):
                        gc.collect()
                        traced.append(tracemalloc.get_traced_memory()[0])
                tg.start_soon(_enter, lock, "k", None)
                await anyio.wait_all_tasks_blocked()
                assert lock.stats().waiting_tasks == 1
    finally:
        tracemalloc.stop()
    # 800 departed waiters kept in the queue would hold on to 800 tasks and
    # their wake-up signals: hundreds of kilobytes.
    assert traced[1] - traced[0] < 64_000
    assert lock.stats().timeouts == 1000
    assert len(lock) == 0


async def _expect_timeout(lock: AsyncLock, key: object, timeout: float) -> None:
    with pytest.raises(LockTimeout):
        await _enter(lock, key, timeout)


# --- AsyncLock: a model-based property test ------------------------------------------------


@dataclass(frozen=True)
class Plan:
    key: int
    start: int  # virtual seconds before asking for the key
    timeout: int | None
    checkpoints: int  # yields inside the critical section ...
    hold: int  # ... then virtual seconds inside it
    fails: bool  # raise inside the critical section
    cancel_at: int | None  # cancel the whole task at this virtual second


plans = st.lists(
    st.builds(
        Plan,
        key=st.integers(0, 2),
        start=st.integers(0, 4),
        timeout=st.none() | st.integers(0, 4),
        checkpoints=st.integers(0, 2),
        hold=st.integers(0, 3),
        fails=st.booleans(),
        cancel_at=st.none() | st.integers(0, 8),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(plans=plans)
async def test_random_schedules_keep_every_guarantee(plans: list[Plan]) -> None:
    # Small integer times make events coincide often: a timeout, a cancel and
    # a hand-off in the same instant, in every order the scheduler picks.
    lock = AsyncLock()
    inside: Counter[int] = Counter()
    asked: dict[int, list[int]] = {0: [], 1: [], 2: []}
    got: dict[int, list[int]] = {0: [], 1: [], 2: []}
    outcome = ["cancelled"] * len(plans)

    async def run(i: int, plan: Plan, scope: anyio.CancelScope) -> None:
        with scope:
            await anyio.sleep(plan.start)
            asked[plan.key].append(i)  # no await until the lock queues us
            try:
                async with lock(plan.key, timeout=plan.timeout):
                    got[plan.key].append(i)
                    inside[plan.key] += 1
                    try:
                        assert inside[plan.key] == 1
                        for _ in range(plan.checkpoints):
                            await anyio.lowlevel.checkpoint()
                        await anyio.sleep(plan.hold)
                        assert inside[plan.key] == 1
                        if plan.fails:
                            raise Boom
                    finally:
                        inside[plan.key] -= 1
            except LockTimeout:
                outcome[i] = "timeout"
            except Boom:
                outcome[i] = "failed"
            else:
                outcome[i] = "done"

    async def cancel(scope: anyio.CancelScope, at: int) -> None:
        await anyio.sleep(at)
        scope.cancel()

    with anyio.fail_after(1000):  # virtual: a deadlock fails fast instead of hanging
        async with anyio.create_task_group() as tg:
            for i, plan in enumerate(plans):
                scope = anyio.CancelScope()
                tg.start_soon(run, i, plan, scope)
                if plan.cancel_at is not None:
                    tg.start_soon(cancel, scope, plan.cancel_at)

    for key in asked:
        # FIFO: the holders of a key, in order, are a subsequence of who asked.
        positions = [asked[key].index(i) for i in got[key]]
        assert positions == sorted(positions)
        assert len(set(got[key])) == len(got[key])
    for i, plan in enumerate(plans):
        if plan.cancel_at is None and outcome[i] != "timeout":
            assert i in got[plan.key]  # nobody who kept waiting was skipped
            assert outcome[i] == ("failed" if plan.fails else "done")
    assert len(lock) == 0
    stats = lock.stats()
    assert stats.waiting_tasks == 0
    assert stats.acquisitions == sum(len(g) for g in got.values())
    assert stats.timeouts == outcome.count("timeout")


@pytest.mark.anyio
async def test_an_unhashable_key_is_a_configuration_error_and_changes_nothing() -> None:
    lock = AsyncLock()
    with pytest.raises(ConfigurationError, match="key must be hashable, got dict"):
        async with lock({"movie": 603}):
            pass
    assert lock.stats() == LockStats(0, 0, 0, 0, 0)


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_one_context_manager_serves_one_block_at_a_time() -> None:
    lock = AsyncLock()
    hold = lock("k")
    async with hold:
        with pytest.raises(RuntimeError, match="already in use"):
            await hold.__aenter__()
        assert lock.stats().held_keys == 1
    async with hold:  # reusable once released
        pass
    assert lock.stats().acquisitions == 2
