"""Tests for single-flight loading and the stale rules: the state machine, then both paths."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
import weakref
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seerrperf import CacheLoadAbortedError, NamedCache
from seerrperf._cache.flight import MISSING as NO_VALUE
from seerrperf._cache.flight import Flight
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

from ._twins import (
    MISSING,
    Api,
    Boom,
    Machine,
    ObservedCache,
    all_loads_done,
    lock_is_free,
    run_threads,
    twins,
)

# -- the state machine --------------------------------------------------------


def test_the_first_miss_leads_and_later_ones_of_the_same_owner_join(clock: FakeClock) -> None:
    machine = Machine(clock)
    value, flight, leader = machine.begin()
    assert (value, leader) == (NO_VALUE, True)
    assert flight is not None
    assert not flight.done.is_set()
    assert machine.begin() == (NO_VALUE, flight, False)
    other_loop = object()
    _, own, own_leader = machine.begin(owner=other_loop)  # another event loop loads its own
    assert own_leader
    assert own is not flight
    flights = machine.flights
    assert (flights.loads, flights.coalesced, flights.running) == (2, 1, 2)
    assert machine.recounts == []


def test_settle_stores_the_value_for_the_flights_ttl_and_wakes_the_waiters(
    clock: FakeClock,
) -> None:
    machine = Machine(clock)
    _, flight, _ = machine.begin()
    machine.flights.settle(flight, "v")
    assert flight.done.is_set()
    assert machine.flights.outcome(flight, 0.0) == "v"
    entry = machine.store.peek("k")
    assert entry is not None
    assert (entry.value, entry.fresh_until) == ("v", 10.0)
    assert machine.flights.running == 0
    clock.advance(10)
    _, again, leader = machine.begin()  # the flight is over: a later miss leads a new one
    assert leader
    assert again is not flight


def test_a_forgotten_flight_answers_its_callers_but_stores_nothing(clock: FakeClock) -> None:
    machine = Machine(clock)
    _, flight, _ = machine.begin("a")
    _, other, _ = machine.begin("b")
    machine.flights.forget("a")
    machine.flights.settle(flight, "outdated")
    assert machine.flights.outcome(flight, 0.0) == "outdated"
    assert machine.store.peek("a") is None
    machine.flights.forget_where(lambda key: key == "b")
    machine.flights.settle(other, "outdated")
    assert machine.store.peek("b") is None
    _, third, _ = machine.begin("c")
    machine.flights.forget_all()
    machine.flights.settle(third, "outdated")
    assert len(machine.store) == 0


def test_fail_hands_one_exception_with_its_traceback_to_every_waiter(clock: FakeClock) -> None:
    machine = Machine(clock)
    _, flight, _ = machine.begin()
    try:
        raise Boom("upstream down")
    except Boom as exc:
        error = exc
    machine.flights.fail(flight, error)
    for _ in range(2):
        with pytest.raises(Boom) as caught:
            machine.flights.outcome(flight, 0.0)
        assert caught.value is error
        assert caught.value.__traceback__ is not None
    assert (machine.flights.load_errors, machine.flights.running) == (1, 0)
    assert machine.store.peek("k") is None


def test_an_interrupted_load_reaches_the_waiters_as_cache_load_aborted(clock: FakeClock) -> None:
    machine = Machine(clock)
    _, flight, _ = machine.begin()
    machine.flights.fail(flight, KeyboardInterrupt())
    with pytest.raises(CacheLoadAbortedError, match="'t' ended with KeyboardInterrupt"):
        machine.flights.outcome(flight, 0.0)


def test_abandon_aborts_a_flight_that_never_ended_and_leaves_an_ended_one(
    clock: FakeClock,
) -> None:
    machine = Machine(clock)
    _, never_ran, _ = machine.begin("a")
    _, ended, _ = machine.begin("b")
    machine.flights.settle(ended, "v")
    machine.flights.abandon(never_ran)
    machine.flights.abandon(ended)
    with pytest.raises(CacheLoadAbortedError, match="CancelledError"):
        machine.flights.outcome(never_ran, 0.0)
    assert machine.flights.outcome(ended, 0.0) == "v"
    assert (machine.flights.load_errors, machine.flights.running) == (1, 0)


def test_a_value_stored_since_the_lookup_is_the_answer(clock: FakeClock) -> None:
    machine = Machine(clock)
    machine.store.put("k", "v", ttl=10)
    assert machine.begin() == ("v", None, False)
    assert machine.recounts == [False]  # counted as a hit after all
    assert machine.flights.loads == 0


def test_a_stale_entry_in_the_swr_window_is_served_while_one_refresh_runs(
    clock: FakeClock,
) -> None:
    machine = Machine(clock)
    machine.store.keep_stale_for(60)
    machine.store.put("k", "old", ttl=10)
    clock.advance(15)
    value, refresh, leader = machine.begin(swr=60)
    assert (value, leader) == ("old", True)
    assert isinstance(refresh, Flight)
    assert refresh.refresh
    assert machine.begin(swr=60) == ("old", None, False)  # no second refresh
    assert machine.recounts == [True, True]
    assert machine.flights.loads == 1
    clock.advance(60)  # past the window: an ordinary miss, joining the refresh
    assert machine.begin(swr=60) == (NO_VALUE, refresh, False)


def test_stale_if_error_serves_the_stale_entry_inside_its_window_only(clock: FakeClock) -> None:
    machine = Machine(clock)
    machine.store.keep_stale_for(30)
    machine.store.put("k", "old", ttl=10)
    clock.advance(20)
    _, flight, _ = machine.begin()
    machine.flights.fail(flight, Boom("down"))
    assert machine.flights.outcome(flight, 30.0) == "old"
    assert machine.recounts == [True]
    with pytest.raises(Boom):
        machine.flights.outcome(flight, 5.0)
    with pytest.raises(Boom):
        machine.flights.outcome(flight, 0.0)


# -- both paths: threads and tasks --------------------------------------------


@twins
@pytest.mark.anyio
async def test_concurrent_misses_of_one_key_run_the_loader_once(api: Api, clock: FakeClock) -> None:
    cache = ObservedCache("t", clock=clock)
    results, calls = await api.crowd_misses(cache, "k", lambda: "value")
    assert results == ["value"] * api.crowd
    assert calls == 1
    stats = cache.stats()
    assert (stats.misses, stats.loads, stats.coalesced) == (api.crowd, 1, api.crowd - 1)
    assert stats.loading == 0
    assert cache.get("k") == "value"


@twins
@pytest.mark.anyio
async def test_a_loader_exception_reaches_every_caller_and_is_not_cached(
    api: Api, clock: FakeClock
) -> None:
    cache = ObservedCache("t", clock=clock)
    error = Boom("upstream down")

    def fail() -> str:
        raise error

    results, calls = await api.crowd_misses(cache, "k", fail)
    assert all(result is error for result in results)
    assert calls == 1
    assert await api.get_or_set(cache, "k", lambda: "recovered") == "recovered"
    assert (cache.stats().load_errors, cache.stats().loading) == (1, 0)


@twins
@pytest.mark.anyio
async def test_a_delete_during_a_load_keeps_its_result_out_of_the_cache(
    api: Api, clock: FakeClock
) -> None:
    cache = NamedCache("t", clock=clock)

    def loader() -> str:
        cache.delete("k")  # as a 404 handler would, while the load is running
        return "outdated"

    assert await api.get_or_set(cache, "k", loader) == "outdated"  # its callers still get it
    assert cache.get("k", MISSING) is MISSING
    assert cache.stats().loading == 0


@twins
@pytest.mark.anyio
async def test_a_set_during_a_load_wins_over_its_result(api: Api, clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)

    def loader() -> str:
        cache.set("k", "explicit")
        return "loaded"

    assert await api.get_or_set(cache, "k", loader) == "loaded"
    assert cache.get("k") == "explicit"


class Interrupt(BaseException):
    pass


def test_waiters_of_an_interrupted_thread_load_get_cache_load_aborted(clock: FakeClock) -> None:
    cache = ObservedCache("t", clock=clock)

    def loader() -> str:
        for _ in range(3):
            assert cache.missed.acquire(timeout=10)
        raise Interrupt

    results = run_threads(3, lambda: cache.get_or_set("k", loader))
    assert sum(isinstance(r, Interrupt) for r in results) == 1  # the thread that ran it
    assert sum(isinstance(r, CacheLoadAbortedError) for r in results) == 2
    assert cache.stats().loading == 0


@pytest.mark.anyio
async def test_cancelling_the_first_caller_does_not_cancel_the_shared_load(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)
    release = anyio.Event()
    finished = anyio.Event()

    async def loader() -> str:
        await release.wait()
        finished.set()
        return "value"

    first = anyio.CancelScope()
    results: list[str] = []

    async def first_caller() -> None:
        with first:
            results.append(await cache.aget_or_set("k", loader))

    async def second_caller() -> None:
        results.append(await cache.aget_or_set("k", loader))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_caller)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second_caller)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert first.cancelled_caught
    assert results == ["value"]
    assert finished.is_set()
    assert cache.get("k") == "value"
    assert cache.stats().loads == 1


@pytest.mark.anyio
async def test_a_load_whose_callers_all_left_still_stores_its_result(
    clock: FakeClock, anyio_backend: str
) -> None:
    cache = NamedCache("t", clock=clock)
    release = anyio.Event()
    load_tasks: list[weakref.ref[asyncio.Task[Any]]] = []

    async def loader() -> str:
        if anyio_backend == "asyncio":
            task = asyncio.current_task()
            assert task is not None
            load_tasks.append(weakref.ref(task))
        await release.wait()
        return "value"

    with anyio.fail_after(10):
        with anyio.move_on_after(0):
            await cache.aget_or_set("k", loader)
        assert cache.stats().loading == 1
        release.set()
        await all_loads_done()
    assert cache.get("k") == "value"
    assert cache.stats().loading == 0
    gc.collect()
    assert all(ref() is None for ref in load_tasks)  # the cache let go of the finished task


def test_event_loops_in_two_threads_do_not_share_a_load(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    started = threading.Event()
    release = threading.Event()

    async def slow_loader() -> str:
        started.set()
        await anyio.to_thread.run_sync(release.wait, 10)
        return "from thread"

    async def fast_loader() -> str:
        return "from main"

    results = []
    thread = threading.Thread(
        target=lambda: results.append(anyio.run(cache.aget_or_set, "k", slow_loader))
    )
    thread.start()
    try:
        assert started.wait(10)
        assert anyio.run(cache.aget_or_set, "k", fast_loader, backend="trio") == "from main"
    finally:
        release.set()
        thread.join(10)
    assert results == ["from thread"]
    assert cache.stats().loads == 2


# -- stale-while-revalidate and stale-if-error --------------------------------


@pytest.mark.anyio
async def test_stale_while_revalidate_serves_stale_and_refreshes_exactly_once(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)
    release = anyio.Event()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return f"v{calls}"

    async def get() -> str:
        return await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    assert await get() == "v1"
    clock.advance(15)
    with anyio.fail_after(10):
        # Nothing awaits the refresh, so every caller answers without blocking.
        assert [await get() for _ in range(100)] == ["v1"] * 100
        await anyio.wait_all_tasks_blocked()
        assert calls == 2
        assert cache.stats().loading == 1
        release.set()
        await all_loads_done()
    assert await get() == "v2"
    stats = cache.stats()
    assert (stats.stale_hits, stats.loads, stats.hits, stats.loading) == (100, 2, 1, 0)


@pytest.mark.anyio
async def test_entries_are_dropped_after_the_stale_window(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    values = iter(["v1", "v2"])

    async def loader() -> str:
        return next(values)

    assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v1"
    clock.advance(15)
    assert len(cache) == 0
    assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v2"
    assert cache.stats().stale_hits == 0


@pytest.mark.anyio
async def test_a_failing_refresh_is_logged_and_keeps_the_stale_entry(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = NamedCache("refreshing", clock=clock)
    outcomes = iter(["v1", Boom(f"api_key={SENTINEL}"), "v3"])

    async def loader() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def get() -> str:
        return await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    with caplog.at_level(logging.WARNING, logger="seerrperf.cache"):
        assert await get() == "v1"
        clock.advance(15)
        assert await get() == "v1"
        await anyio.wait_all_tasks_blocked()
        gc.collect()  # asyncio reports unretrieved task exceptions on collection
        assert await get() == "v1"  # still stale, and the key backs off: no refresh
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)  # the first backoff
        assert await get() == "v1"  # still stale; this one starts the next refresh
        await anyio.wait_all_tasks_blocked()
    assert await get() == "v3"
    warnings = [r for r in caplog.records if r.name == "seerrperf.cache"]
    assert len(warnings) == 1
    assert "refreshing" in warnings[0].getMessage()
    assert "Boom" in warnings[0].getMessage()
    assert "the stale entry stays" in warnings[0].getMessage()
    assert SENTINEL not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert cache.stats().load_errors == 1


@pytest.mark.anyio
async def test_a_failing_refresh_after_a_delete_says_the_entry_was_removed(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = NamedCache("t", clock=clock)
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return "v1"
        cache.delete("k")  # a 404 during the refresh
        raise Boom("gone")

    with caplog.at_level(logging.WARNING, logger="seerrperf.cache"):
        assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60) == "v1"
        clock.advance(15)
        assert await cache.aget_or_set("k", loader, ttl=10, stale_while_revalidate=60) == "v1"
        await all_loads_done()
    assert "the entry was removed" in caplog.text
    assert "k" not in cache
    assert len(cache) == 0


@pytest.mark.anyio
async def test_stale_if_error_serves_stale_inside_the_window_and_raises_outside(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)

    async def good() -> str:
        return "v1"

    async def bad() -> str:
        raise Boom("down")

    assert await cache.aget_or_set("k", good, ttl=10, stale_if_error=30) == "v1"
    clock.advance(20)
    assert await cache.aget_or_set("k", bad, ttl=10, stale_if_error=30) == "v1"
    stats = cache.stats()
    # 1 miss, the first load; the failed one was answered stale.
    assert (stats.stale_hits, stats.misses, stats.load_errors) == (1, 1, 1)
    clock.advance(25)  # 35 s past expiry: outside the window
    with pytest.raises(Boom):
        await cache.aget_or_set("k", bad, ttl=10, stale_if_error=30)
    assert cache.stats().misses == 2


# -- property-based -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    cancel_at=st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=1, max_size=6),
    release_at=st.integers(0, 6),
    fails=st.booleans(),
)
def test_a_shared_load_survives_cancellation_at_any_point(
    anyio_backend: str, cancel_at: list[int | None], release_at: int, fails: bool
) -> None:
    async def main() -> None:
        cache = NamedCache("p", clock=FakeClock())
        release = anyio.Event()
        calls = 0

        async def loader() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            if fails:
                raise Boom("inside the shared load")
            return "value"

        scopes = [anyio.CancelScope() for _ in cancel_at]
        outcomes: dict[int, object] = {}

        async def caller(index: int) -> None:
            with scopes[index]:
                try:
                    outcomes[index] = await cache.aget_or_set("k", loader)
                except Boom as exc:
                    outcomes[index] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for index in range(len(cancel_at)):
                    tg.start_soon(caller, index)
                for step in range(7):
                    for index, at in enumerate(cancel_at):
                        if at == step:
                            scopes[index].cancel()
                    if step == release_at:
                        release.set()
                    await anyio.lowlevel.checkpoint()
            await all_loads_done()

        assert calls == 1
        for index, at in enumerate(cancel_at):
            if index in outcomes:
                assert isinstance(outcomes[index], Boom) if fails else outcomes[index] == "value"
            else:
                assert at is not None
                assert scopes[index].cancelled_caught
        stats = cache.stats()
        assert (stats.loads, stats.load_errors, stats.loading) == (1, int(fails), 0)
        assert stats.misses == len(cancel_at)
        assert (cache.get("k", MISSING) == "value") is not fails

    anyio.run(main, backend=anyio_backend)


class ClockError(Exception):
    pass


@settings(max_examples=60, deadline=None)
@given(fail_on=st.sets(st.integers(0, 15), max_size=3), sync_callers=st.integers(0, 2))
def test_a_failing_clock_never_strands_callers_or_holds_the_lock(
    anyio_backend: str, fail_on: set[int], sync_callers: int
) -> None:
    ticks = itertools.count()
    failing = True

    def clock() -> float:
        if failing and next(ticks) in fail_on:
            raise ClockError
        return 0.0

    cache = NamedCache("t", clock=clock)

    async def main() -> None:
        release = anyio.Event()

        async def loader() -> str:
            await release.wait()
            return "value"

        outcomes: list[object] = []

        async def caller() -> None:
            try:
                outcomes.append(await cache.aget_or_set("k", loader, stale_if_error=5))
            except ClockError as exc:
                outcomes.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(caller)
                for _ in range(3):  # let the callers join the load
                    await anyio.lowlevel.checkpoint()
                release.set()
            await all_loads_done()
        for _ in range(sync_callers):
            try:
                outcomes.append(cache.get_or_set("k", lambda: "value"))
            except ClockError as exc:
                outcomes.append(exc)
        assert len(outcomes) == 3 + sync_callers
        assert all(o == "value" or isinstance(o, ClockError) for o in outcomes)

    anyio.run(main, backend=anyio_backend)
    assert lock_is_free(cache)
    failing = False
    assert cache.stats().loading == 0
