"""Tests for stale serving on the sync path: ``get_or_set`` with the two stale windows."""

from __future__ import annotations

import contextvars
import logging
import threading

import pytest

from seerrperf import NamedCache
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

from ._twins import REFRESH_THREAD, Boom, ObservedCache, join_refreshes, run_threads

CROWD = 50


def test_fifty_threads_on_a_stale_key_are_served_at_once_while_one_thread_refreshes(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)
    calls: list[str] = []  # list.append is atomic: a second refresh could not hide
    refreshing = threading.Event()
    release = threading.Event()
    refresh_threads: list[threading.Thread] = []

    def loader() -> str:
        calls.append(threading.current_thread().name)
        if len(calls) > 1:
            refresh_threads.append(threading.current_thread())
            refreshing.set()
            assert release.wait(10)
        return f"v{len(calls)}"

    def get() -> str:
        return cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    assert get() == "v1"
    clock.advance(15)
    start = threading.Barrier(CROWD)

    def stale_get() -> str:
        start.wait(10)
        return get()

    # The refresh is held until every caller has answered: nobody waited for it.
    assert run_threads(CROWD, stale_get) == ["v1"] * CROWD
    assert refreshing.wait(10)
    assert len(calls) == 2
    assert cache.stats().loading == 1
    assert refresh_threads[0].daemon
    assert refresh_threads[0].name.startswith(REFRESH_THREAD)
    release.set()
    join_refreshes()
    assert cache.get("k") == "v2"
    stats = cache.stats()
    assert (stats.stale_hits, stats.loads, stats.loading) == (CROWD, 2, 0)
    assert stats.hits == 1  # the get above; the crowd's lookups were stale hits


def test_a_miss_past_the_window_joins_the_refresh_instead_of_starting_another(
    clock: FakeClock,
) -> None:
    cache = ObservedCache("t", clock=clock)
    refreshing = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        if len(calls) == 2:
            refreshing.set()
            assert release.wait(10)
        return f"v{len(calls)}"

    assert cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v1"
    clock.advance(12)
    assert cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=5) == "v1"
    assert refreshing.wait(10)
    clock.advance(10)  # 12 s past expiry: the entry is gone, the refresh still runs
    missed = cache.stats().misses
    results: list[str] = []
    waiter = threading.Thread(
        target=lambda: results.append(cache.get_or_set("k", loader, ttl=10)), daemon=True
    )
    waiter.start()
    for _ in range(missed + 1):  # every miss so far, and the waiter's
        assert cache.missed.acquire(timeout=10)
    release.set()
    waiter.join(10)
    join_refreshes()
    assert results == ["v2"]
    assert len(calls) == 2
    assert cache.stats().coalesced == 1


def test_a_failing_refresh_is_logged_and_keeps_the_stale_entry(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = NamedCache("refreshing", clock=clock)
    outcomes = iter(["v1", Boom(f"api_key={SENTINEL}"), "v3"])

    def loader() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def get() -> str:
        return cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=60)

    with caplog.at_level(logging.WARNING, logger="seerrperf.cache"):
        assert get() == "v1"
        clock.advance(15)
        assert get() == "v1"
        join_refreshes()
        assert get() == "v1"  # still stale, and the key backs off: no refresh
        join_refreshes()
        clock.advance(1)  # the first backoff
        assert get() == "v1"  # still stale; this one starts the next refresh
        join_refreshes()
    assert get() == "v3"
    warnings = [r for r in caplog.records if r.name == "seerrperf.cache"]
    assert len(warnings) == 1
    assert "refreshing" in warnings[0].getMessage()
    assert "Boom" in warnings[0].getMessage()
    assert "the stale entry stays" in warnings[0].getMessage()
    assert SENTINEL not in caplog.text
    assert cache.stats().load_errors == 1


def test_the_refresh_runs_in_a_copy_of_the_callers_context(clock: FakeClock) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    cache = NamedCache("t", clock=clock)
    seen: list[str] = []

    def loader() -> str:
        seen.append(request_id.get())
        request_id.set("changed by the loader")
        return "v"

    cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=60)
    clock.advance(15)
    token = request_id.set("req-7")
    try:
        cache.get_or_set("k", loader, ttl=10, stale_while_revalidate=60)
        join_refreshes()
        assert request_id.get() == "req-7"  # the loader's change stayed in its copy
    finally:
        request_id.reset(token)
    assert seen == ["-", "req-7"]


def test_stale_if_error_serves_the_stale_entry_inside_the_window_and_raises_outside(
    clock: FakeClock,
) -> None:
    cache = NamedCache("t", clock=clock)

    def bad() -> str:
        raise Boom("down")

    assert cache.get_or_set("k", lambda: "v1", ttl=10, stale_if_error=30) == "v1"
    clock.advance(20)
    assert cache.get_or_set("k", bad, ttl=10, stale_if_error=30) == "v1"
    stats = cache.stats()
    assert (stats.stale_hits, stats.misses, stats.load_errors) == (1, 1, 1)
    clock.advance(25)  # 35 s past expiry: outside the window
    with pytest.raises(Boom, match="down"):
        cache.get_or_set("k", bad, ttl=10, stale_if_error=30)
    assert cache.stats().misses == 2


def test_stale_if_error_answers_every_thread_waiting_for_the_failed_load(
    clock: FakeClock,
) -> None:
    cache = ObservedCache("t", clock=clock)
    cache.get_or_set("k", lambda: "old", ttl=10, stale_if_error=60)
    assert cache.missed.acquire(timeout=10)  # that first miss
    clock.advance(30)
    crowd = 10

    def failing() -> str:
        for _ in range(crowd):  # every thread has missed and joined this run
            assert cache.missed.acquire(timeout=10)
        raise Boom("down")

    results = run_threads(crowd, lambda: cache.get_or_set("k", failing, stale_if_error=60))
    assert results == ["old"] * crowd
    stats = cache.stats()
    assert (stats.loads, stats.load_errors, stats.stale_hits) == (2, 1, crowd)


def test_without_windows_a_stale_entry_is_a_plain_miss(clock: FakeClock) -> None:
    cache = NamedCache("t", clock=clock)
    cache.get_or_set("k", lambda: "v1", ttl=10, stale_while_revalidate=60)
    clock.advance(15)
    assert cache.get_or_set("k", lambda: "v2", ttl=10) == "v2"  # loaded in this thread
    assert [t for t in threading.enumerate() if t.name.startswith(REFRESH_THREAD)] == []
    assert cache.stats().stale_hits == 0
