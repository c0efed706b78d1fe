"""Tests for the bounds on loading: load timeouts, in-flight bound, refresh backoff, clock."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seerrperf import (
    CacheLoadTimeout,
    CacheOverloadedError,
    ConfigurationError,
    NamedCache,
    SeerrperfError,
)
from seerrperf._cache.flight import REFRESH_BACKOFF_MAX, Flight, refresh_backoff
from seerrperf.testing import FakeClock

from ._twins import (
    MISSING,
    Api,
    Boom,
    Machine,
    all_loads_done,
    join_refreshes,
    lock_is_free,
    twins,
)

# -- load timeouts ------------------------------------------------------------


def test_the_timeout_and_overload_errors_sit_in_the_hierarchy() -> None:
    assert issubclass(CacheLoadTimeout, SeerrperfError)
    assert issubclass(CacheLoadTimeout, TimeoutError)
    assert issubclass(CacheOverloadedError, SeerrperfError)
    assert NamedCache("t").load_timeout == 30.0
    assert NamedCache("t", maxsize=50).max_loading == 50
    assert NamedCache("t", load_timeout=2.5, max_loading=7).max_loading == 7


def test_a_flight_past_its_deadline_frees_its_key_for_the_next_caller(clock: FakeClock) -> None:
    machine = Machine(clock)
    _, hung, leader = machine.begin(timeout=0.0)  # over at once: no waiting in the test
    assert leader
    _, fresh, leader = machine.begin()
    assert leader  # not joined: the overdue flight was ended and a new one leads
    assert fresh is not hung
    assert hung.done.is_set()
    with pytest.raises(CacheLoadTimeout, match="'t' did not finish within its load_timeout of 0 s"):
        machine.flights.outcome(hung, 0.0)
    flights = machine.flights
    assert (flights.load_timeouts, flights.load_errors, flights.running) == (1, 1, 2)
    machine.flights.settle(hung, "late")  # the hung loader returns after all
    assert machine.store.peek("k") is None  # a late result is not stored
    assert flights.running == 1
    machine.flights.settle(fresh, "fresh")
    entry = machine.store.peek("k")
    assert entry is not None
    assert entry.value == "fresh"
    assert flights.running == 0


def test_time_out_and_settle_race_to_one_answer(clock: FakeClock) -> None:
    machine = Machine(clock)
    _, flight, _ = machine.begin()
    machine.flights.settle(flight, "v")
    machine.flights.time_out(flight, run_ended=False)  # too late: the value stands
    assert machine.flights.outcome(flight, 0.0) == "v"
    _, other, _ = machine.begin("b")
    machine.flights.time_out(other, run_ended=True)
    machine.flights.fail(other, Boom("after the deadline"))  # already answered
    with pytest.raises(CacheLoadTimeout):
        machine.flights.outcome(other, 0.0)
    assert (machine.flights.load_timeouts, machine.flights.running) == (1, 0)


def test_a_hung_sync_loader_times_out_its_waiters_and_frees_the_key(clock: FakeClock) -> None:
    cache = NamedCache("hung", clock=clock, load_timeout=0.5)
    entered = threading.Event()
    release = threading.Event()
    late: list[object] = []

    def hung() -> str:
        entered.set()
        assert release.wait(10)
        return "late"

    leader = threading.Thread(target=lambda: late.append(cache.get_or_set("k", hung)))
    leader.start()
    try:
        assert entered.wait(10)
        with pytest.raises(CacheLoadTimeout, match="'hung' did not finish within"):
            cache.get_or_set("k", lambda: "unused")  # joins, and waits until the deadline
        stats = cache.stats()
        assert (stats.load_timeouts, stats.load_errors, stats.loading) == (1, 1, 1)
        # The key is free: the next caller leads a new load at once.
        assert cache.get_or_set("k", lambda: "fresh") == "fresh"
        assert cache.stats().loading == 1  # the hung thread still runs: it cannot be stopped
    finally:
        release.set()
        leader.join(10)
    assert late == ["late"]  # its own thread gets the late result...
    assert cache.get("k") == "fresh"  # ...which is not stored
    assert cache.stats().loading == 0
    assert lock_is_free(cache)


def test_a_timed_out_load_inside_the_stale_if_error_window_serves_stale(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock, load_timeout=0.5)
    cache.get_or_set("k", lambda: "old", ttl=10, stale_if_error=60)
    clock.advance(20)
    entered = threading.Event()
    release = threading.Event()

    def hung() -> str:
        entered.set()
        assert release.wait(10)
        return "late"

    leader = threading.Thread(target=lambda: cache.get_or_set("k", hung, stale_if_error=60))
    leader.start()
    try:
        assert entered.wait(10)
        assert cache.get_or_set("k", lambda: "unused", stale_if_error=60) == "old"
    finally:
        release.set()
        leader.join(10)
    assert cache.stats().load_timeouts == 1


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            ("begin", "begin overdue", "settle", "fail", "time out", "cancelled", "forget")
        ),
        st.integers(0, 2),
        st.integers(0, 7),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=_STEPS)
def test_deadlines_results_and_failures_in_any_order_give_one_answer_and_leave_nothing(
    steps: list[tuple[str, int, int]],
) -> None:
    machine = Machine(FakeClock())
    led: list[Flight[Any]] = []
    answers: dict[int, tuple[object, object]] = {}
    for action, key, pick in steps:
        if action.startswith("begin"):
            timeout = 0.0 if action == "begin overdue" else 30.0
            _, flight, leader = machine.begin(f"k{key}", timeout=timeout)
            if leader:
                led.append(flight)
            else:
                assert flight is None or flight in led  # joined a running load
            continue
        if not led:
            continue
        flight = led[pick % len(led)]
        if action == "settle":
            machine.flights.settle(flight, ("value of", id(flight)))
        elif action == "fail":
            machine.flights.fail(flight, Boom("load failed"))
        elif action in ("time out", "cancelled"):
            machine.flights.time_out(flight, run_ended=action == "cancelled")
        else:
            with machine.lock:
                machine.flights.forget(flight.key)
        for one in led:  # an answer, once given, never changes
            if one.ended:
                assert one.done.is_set()
                answer = (one.value, one.error)
                assert answers.setdefault(id(one), answer) == answer
    for flight in led:  # every loader returns at last
        machine.flights.settle(flight, "at last")
    flights = machine.flights
    assert flights.running == 0
    assert all(flight.ended for flight in led)
    assert flights.load_timeouts <= flights.load_errors <= flights.loads == len(led)
    for key in range(3):  # nothing is left running: a new caller never joins an old load
        value, flight, leader = machine.begin(f"k{key}")
        assert leader or (flight is None and value is not None)


def test_a_sync_loader_that_fails_after_its_deadline_raises_its_own_error(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock, load_timeout=0.5)
    entered = threading.Event()
    release = threading.Event()
    outcome: list[BaseException] = []

    def hung() -> str:
        entered.set()
        assert release.wait(10)
        raise Boom("late failure")

    def lead() -> None:
        try:
            cache.get_or_set("k", hung)
        except Exception as exc:  # recorded for the test to assert on
            outcome.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    try:
        assert entered.wait(10)
        with pytest.raises(CacheLoadTimeout):
            cache.get_or_set("k", lambda: "unused")
    finally:
        release.set()
        leader.join(10)
    assert [type(exc) for exc in outcome] == [Boom]
    assert cache.stats().load_errors == 1  # the timeout; the late failure changes nothing


@pytest.mark.anyio
async def test_an_async_load_is_cancelled_at_its_deadline(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock, load_timeout=0.2)
    cancelled = anyio.Event()
    results: list[object] = []

    async def hung() -> str:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    async def caller() -> None:
        try:
            results.append(await cache.aget_or_set("k", hung))
        except CacheLoadTimeout as exc:
            results.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(caller)
        await cancelled.wait()
        await all_loads_done()

    async def fresh() -> str:
        return "fresh"

    assert len(results) == 5
    assert all(isinstance(result, CacheLoadTimeout) for result in results)
    assert await cache.aget_or_set("k", fresh) == "fresh"  # the key is free again
    stats = cache.stats()
    assert (stats.loads, stats.coalesced, stats.load_timeouts, stats.loading) == (2, 4, 1, 0)


@pytest.mark.anyio
async def test_a_loader_that_ignores_cancellation_still_frees_its_waiters(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)
    release = anyio.Event()

    async def stubborn() -> str:
        with anyio.CancelScope(shield=True):
            await release.wait()
        return "late"

    with anyio.fail_after(10):
        with pytest.raises(CacheLoadTimeout):
            await cache.aget_or_set("k", stubborn, load_timeout=0.2)
        assert cache.stats().loading == 1

        async def fresh() -> str:
            return "fresh"

        assert await cache.aget_or_set("k", fresh) == "fresh"
        release.set()
        await all_loads_done()
    assert cache.get("k") == "fresh"
    assert cache.stats().loading == 0


@pytest.mark.anyio
async def test_a_call_may_pass_its_own_load_timeout(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock, load_timeout=0.001)

    async def loader() -> str:
        await anyio.sleep(0.05)  # longer than the cache's default, shorter than the call's
        return "v"

    with anyio.fail_after(10):
        assert await cache.aget_or_set("k", loader, load_timeout=5) == "v"
        assert cache.stats().load_timeouts == 0
        with pytest.raises(CacheLoadTimeout, match=r"load_timeout of 0\.001 s"):
            await cache.aget_or_set("other", loader)


# -- the in-flight bound ------------------------------------------------------


def test_a_load_beyond_max_loading_fails_at_once_and_joining_still_works(
    clock: FakeClock,
) -> None:
    cache = NamedCache("busy", clock=clock, max_loading=2)
    cache.get_or_set("stale", lambda: "old", ttl=10, stale_if_error=60)
    clock.advance(20)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hung() -> str:
        entered.release()
        assert release.wait(10)
        return "v"

    threads = [
        threading.Thread(target=cache.get_or_set, args=(key, hung), daemon=True)
        for key in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            assert entered.acquire(timeout=10)
        with pytest.raises(CacheOverloadedError, match=r"'busy' already runs 2 loads \(max_load"):
            cache.get_or_set("c", lambda: "never called")
        # A stale entry inside the stale-if-error window answers instead.
        assert cache.get_or_set("stale", lambda: "never called", stale_if_error=60) == "old"
        assert cache.stats().loads_rejected == 2
    finally:
        release.set()
        for thread in threads:
            thread.join(10)
    assert cache.get_or_set("c", lambda: "now") == "now"
    stats = cache.stats()
    assert (stats.loading, stats.loads_rejected, stats.load_errors) == (0, 2, 0)


@pytest.mark.anyio
async def test_many_distinct_hung_keys_leave_at_most_max_loading_tasks(
    clock: FakeClock, anyio_backend: str
) -> None:
    cache = NamedCache("t", clock=clock, max_loading=100)
    release = anyio.Event()

    async def hung() -> str:
        await release.wait()
        return "v"

    rejected = 0
    baseline = len(asyncio.all_tasks()) if anyio_backend == "asyncio" else 0
    with anyio.fail_after(20):
        for key in range(5_000):
            with anyio.move_on_after(0):  # a caller that gives up at once, as a timed-out request
                try:
                    await cache.aget_or_set(key, hung)
                except CacheOverloadedError:
                    rejected += 1
        await anyio.wait_all_tasks_blocked()
        assert cache.stats().loading == 100
        if anyio_backend == "asyncio":
            assert len(asyncio.all_tasks()) - baseline == 100
        release.set()
        await all_loads_done()
    assert rejected == 4_900
    stats = cache.stats()
    assert (stats.loads, stats.loads_rejected, stats.loading, stats.keys) == (100, 4_900, 0, 100)


_RSS_PROBE = """
import asyncio, json, resource
from seerrperf import CacheOverloadedError, NamedCache

async def main():
    cache = NamedCache("probe")  # maxsize 10,000, so max_loading 10,000
    release = asyncio.Event()

    async def hung():
        await release.wait()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rejected = 0
    for key in range(100_000):
        try:
            async with asyncio.timeout(0):  # a request that gives up at once
                await cache.aget_or_set(key, hung)
        except TimeoutError:
            pass
        except CacheOverloadedError:
            rejected += 1
    await asyncio.sleep(0)
    tasks = len(asyncio.all_tasks())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    release.set()
    print(json.dumps({"tasks": tasks, "rejected": rejected, "grew_kib": after - before}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_hundred_thousand_hung_keys_keep_memory_bounded() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(probe.stdout)
    assert result["tasks"] <= 10_000 + 1
    assert result["rejected"] == 90_000
    # Unbounded, 100,000 hung loads grew the process by about 300 MB.
    assert result["grew_kib"] < 150 * 1024, result


# -- refresh backoff ----------------------------------------------------------


def test_the_refresh_backoff_doubles_up_to_its_cap() -> None:
    assert [refresh_backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert refresh_backoff(10_000) == REFRESH_BACKOFF_MAX


@twins
@pytest.mark.anyio
async def test_a_thousand_stale_hits_during_an_outage_make_a_handful_of_refreshes(
    api: Api, clock: FakeClock
) -> None:
    cache = NamedCache("outage", clock=clock)
    attempts: list[float] = []
    up = False

    def upstream() -> str:
        attempts.append(clock())
        if not up:
            raise Boom("upstream down")
        return "v2"

    async def get() -> Any:
        if api.kind == "sync":
            value = cache.get_or_set("k", upstream, ttl=10, stale_while_revalidate=3_600)
            join_refreshes()
            return value

        async def loader() -> str:
            return upstream()

        value = await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=3_600)
        await all_loads_done()
        return value

    cache.get_or_set("k", lambda: "v1", ttl=10, stale_while_revalidate=3_600)
    clock.advance(10)  # stale from now on
    answers = []
    for _ in range(1_000):  # one stale hit every 1/8 s for 125 s
        answers.append(await get())
        clock.advance(0.125)
    assert answers == ["v1"] * 1_000  # every hit served stale at once
    # One refresh at expiry, then after 1, 2, 4, 8, 16, 32 and 60 s: 8, not 1,000.
    assert [t - 10 for t in attempts] == [0, 1, 3, 7, 15, 31, 63, 123]
    stats = cache.stats()
    assert (stats.stale_hits, stats.load_errors) == (1_000, 8)
    up = True
    clock.advance(60)  # past the capped backoff
    assert await get() == "v1"  # this hit starts the refresh that succeeds
    assert await get() == "v2"
    clock.advance(10)  # stale again, with a fresh record: the backoff starts over
    up = False
    assert await get() == "v2"
    clock.advance(1)
    assert await get() == "v2"
    assert len(attempts) == 11


@pytest.mark.anyio
async def test_a_hung_refresh_times_out_and_backs_off(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock, load_timeout=0.1)
    cancelled = anyio.Event()
    calls = 0

    async def hung() -> str:
        nonlocal calls
        calls += 1
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    cache.get_or_set("k", lambda: "v1", ttl=10, stale_while_revalidate=60)
    clock.advance(10)
    with anyio.fail_after(10):
        assert await cache.aget_or_set("k", hung, stale_while_revalidate=60) == "v1"
        await cancelled.wait()  # the refresh task is cancelled at its deadline
        await all_loads_done()
    assert await cache.aget_or_set("k", hung, stale_while_revalidate=60) == "v1"
    assert calls == 1  # backing off
    stats = cache.stats()
    assert (stats.load_timeouts, stats.loading, stats.stale_hits) == (1, 0, 2)


# -- the clock ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "shown"),
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (10**400, "inf")],
)
def test_a_clock_reading_that_is_not_finite_fails_loudly_on_first_use(
    reading: object, shown: str
) -> None:
    cache = NamedCache("t", clock=lambda: reading)  # type: ignore[arg-type,return-value]
    message = f"^clock must return a finite number of seconds, got {shown}$"
    called: list[int] = []
    with pytest.raises(ConfigurationError, match=message):
        cache.get("k")
    with pytest.raises(ConfigurationError, match=message):
        cache.set("k", 1)
    with pytest.raises(ConfigurationError, match=message):
        cache.get_or_set("k", lambda: called.append(1))
    assert called == []  # refused before the loader ran
    assert cache.stats().loading == 0
    assert lock_is_free(cache)


@pytest.mark.parametrize("reading", ["12.5", None, True, [1.0]])
def test_a_clock_reading_that_is_not_a_number_fails_loudly(reading: object) -> None:
    cache = NamedCache("t", clock=lambda: reading)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match=r"^clock must return a number of seconds, got "):
        cache.get_or_set("k", lambda: 1)


@pytest.mark.anyio
async def test_a_clock_that_turns_nan_is_refused_on_the_async_path_too() -> None:
    now = [0.0]
    cache = NamedCache("t", clock=lambda: now[0])
    cache.set("k", "v", ttl=10)
    now[0] = math.nan

    async def loader() -> str:
        raise AssertionError("not called")

    with pytest.raises(ConfigurationError, match="got nan"):
        await cache.aget_or_set("k", loader)
    with pytest.raises(ConfigurationError, match="got nan"):
        cache.get("k")


# -- arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: NamedCache("t", load_timeout=0), "load_timeout"),
        (lambda: NamedCache("t", load_timeout=math.nan), "load_timeout"),
        (lambda: NamedCache("t", load_timeout=None), "load_timeout"),  # type: ignore[arg-type]
        (lambda: NamedCache("t", max_loading=0), "max_loading"),
        (lambda: NamedCache("t", max_loading=2.0), "max_loading"),  # type: ignore[arg-type]
        (lambda: NamedCache("t").get_or_set("k", int, load_timeout=-1), "load_timeout"),
    ],
)
def test_invalid_bounds_raise_configuration_error(
    build: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{argument} must be"):
        build()


@pytest.mark.anyio
async def test_an_invalid_async_load_timeout_raises_configuration_error() -> None:
    async def loader() -> int:
        return 1

    cache = NamedCache("t")
    with pytest.raises(ConfigurationError, match=r"^load_timeout must be"):
        await cache.aget_or_set("k", loader, load_timeout=math.inf)
    assert cache.get("k", MISSING) is MISSING


@pytest.mark.parametrize("bad", [True, float("nan"), -1.0, "60"])
def test_a_valid_call_remembered_does_not_let_an_equal_invalid_one_through(bad: object) -> None:
    cache = NamedCache("remembered")
    ttl = 1
    assert cache.get_or_set("k", lambda: "v", ttl, stale_if_error=60.0) == "v"
    assert cache.get_or_set("k", lambda: "w", ttl, stale_if_error=60.0) == "v"  # the fast path
    with pytest.raises(ConfigurationError):
        cache.get_or_set("k", lambda: "w", bad, stale_if_error=60.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        cache.get_or_set("k", lambda: "w", ttl, stale_if_error=bad)  # type: ignore[arg-type]
