"""batch_fetch and BatchLoader: ordering, bounds, failures, cancellation, on asyncio and trio."""

from __future__ import annotations

import collections
import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from trio.testing import MockClock

from seerrperf import (
    BatchLoader,
    BatchLoaderStats,
    ConfigurationError,
    async_pool_factory,
    batch_fetch,
)
from seerrperf._runtime import StartSpacer as _StartSpacer
from tests._support import SENTINEL

BOTH = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
DEADLINE = 5  # seconds before a test that should finish at once counts as hung


def virtual_time() -> pytest.MarkDecorator:
    """Backends for tests that wait on timeouts: trio's clock jumps ahead when all tasks block."""
    return pytest.mark.parametrize(
        "anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})], ids=["trio-vt"]
    )


def task_ids() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


async def checkpoints(n: int) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


class Probe:
    """An instrumented fetch function: counts calls, calls in flight, and cancellations.

    ``kinds`` maps an item to how its call behaves: "ok" returns ``item * 10``,
    "fail" raises ``ValueError``, "hang" never returns.
    """

    def __init__(self, kinds: Mapping[int, str] | None = None) -> None:
        self.kinds = kinds or {}
        self.calls: collections.Counter[int] = collections.Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled: list[int] = []

    async def __call__(self, item: int) -> int:
        self.calls[item] += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await checkpoints(item % 3)
            kind = self.kinds.get(item, "ok")
            if kind == "fail":
                raise ValueError(item)
            if kind == "hang":
                await anyio.sleep_forever()
            return item * 10
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(item)
            raise
        finally:
            self.in_flight -= 1


# --- batch_fetch -------------------------------------------------------------


@BOTH
@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(0, 15), max_size=40),
    kinds=st.lists(st.sampled_from(["ok", "fail"]), min_size=16, max_size=16),
    concurrency=st.integers(1, 8),
    return_exceptions=st.booleans(),
)
async def test_results_align_with_inputs_despite_failures(
    items: list[int], kinds: list[str], concurrency: int, return_exceptions: bool
) -> None:
    probe = Probe(dict(enumerate(kinds)))
    before = task_ids()
    with anyio.fail_after(DEADLINE):
        results = await batch_fetch(
            probe, items, concurrency=concurrency, return_exceptions=return_exceptions
        )
    assert len(results) == len(items)
    for item, result in zip(items, results, strict=True):
        if kinds[item] == "ok":
            assert result == item * 10
        elif return_exceptions:
            assert isinstance(result, ValueError)
            assert result.args == (item,)
        else:
            assert result is None
    assert probe.calls == collections.Counter(set(items))  # duplicates call once
    assert probe.most_in_flight <= concurrency
    assert probe.in_flight == 0
    assert task_ids() == before


@virtual_time()
@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(0, 15), max_size=40),
    kinds=st.lists(st.sampled_from(["ok", "fail", "hang"]), min_size=16, max_size=16),
    concurrency=st.integers(1, 8),
)
async def test_timed_out_calls_are_cancelled_and_the_rest_complete(
    items: list[int], kinds: list[str], concurrency: int
) -> None:
    probe = Probe(dict(enumerate(kinds)))
    with anyio.fail_after(100):  # virtual seconds
        results = await batch_fetch(
            probe, items, concurrency=concurrency, item_timeout=1.0, return_exceptions=True
        )
    expected_error = {"fail": ValueError, "hang": TimeoutError}
    for item, result in zip(items, results, strict=True):
        if kinds[item] == "ok":
            assert result == item * 10
        else:
            assert type(result) is expected_error[kinds[item]]
    assert sorted(probe.cancelled) == sorted(i for i in set(items) if kinds[i] == "hang")
    assert probe.most_in_flight <= concurrency
    assert probe.in_flight == 0


@BOTH
@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(0, 30), max_size=30),
    hang=st.sets(st.integers(0, 30)),
    concurrency=st.integers(1, 6),
    cancel_after=st.integers(0, 12),
)
async def test_cancelling_the_caller_cancels_every_call_and_leaves_no_task(
    items: list[int], hang: set[int], concurrency: int, cancel_after: int
) -> None:
    probe = Probe(dict.fromkeys(hang, "hang"))
    before = task_ids()
    finished = False
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:

            async def cancel_caller() -> None:
                await checkpoints(cancel_after)
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_caller)
            await batch_fetch(probe, items, concurrency=concurrency)
            finished = True
            tg.cancel_scope.cancel()
    assert probe.in_flight == 0  # every call ended; a hanging one only ends by cancellation
    assert task_ids() == before
    if set(items) & hang:
        assert not finished
        assert set(probe.calls) & hang <= set(probe.cancelled)


@BOTH
@pytest.mark.anyio
async def test_a_slow_item_does_not_hold_back_the_others() -> None:
    release = anyio.Event()
    done: list[int] = []

    async def fetch(item: int) -> int:
        if item == 0:
            await release.wait()  # released only once every other item is done
        done.append(item)
        if len(done) == 9:
            release.set()
        return item

    with anyio.fail_after(DEADLINE):  # chunks of 2 would wait for item 0 forever
        results = await batch_fetch(fetch, range(10), concurrency=2)
    assert results == list(range(10))
    assert done[-1] == 0


@BOTH
@pytest.mark.anyio
async def test_unhashable_items_are_called_separately() -> None:
    calls: list[list[int]] = []

    async def fetch(item: list[int]) -> int:
        calls.append(item)
        return sum(item)

    with anyio.fail_after(DEADLINE):
        assert await batch_fetch(fetch, [[1, 2], [1, 2], [3]]) == [3, 3, 3]
    assert len(calls) == 3


@pytest.mark.anyio
async def test_empty_input_calls_nothing() -> None:
    probe = Probe()
    with anyio.fail_after(DEADLINE):
        assert await batch_fetch(probe, []) == []
    assert not probe.calls


@pytest.mark.anyio
async def test_timeout_on_asyncio_cancels_the_late_call() -> None:
    probe = Probe({1: "hang"})
    with anyio.fail_after(DEADLINE):
        results = await batch_fetch(probe, [0, 1, 3], item_timeout=0.2)
    assert results == [0, None, 30]
    assert probe.cancelled == [1]


@pytest.mark.anyio
async def test_failures_are_logged_at_debug_with_index_but_without_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fetch(item: int) -> int:
        if item == 7:
            raise RuntimeError(f"GET /movie/7?api_key={SENTINEL} failed")
        return item

    with caplog.at_level(logging.DEBUG, logger="seerrperf.batch"), anyio.fail_after(DEADLINE):
        assert await batch_fetch(fetch, [5, 6, 7]) == [5, 6, None]
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert "item 2" in record.getMessage()
    assert "RuntimeError" in record.getMessage()
    assert SENTINEL not in caplog.text


@virtual_time()
@pytest.mark.anyio
async def test_max_per_second_spaces_call_starts_evenly() -> None:
    starts: list[float] = []

    async def fetch(item: int) -> int:
        starts.append(anyio.current_time())
        await anyio.sleep(1.0)  # long calls: the rate, not the concurrency, is the limit
        return item

    t0 = anyio.current_time()
    with anyio.fail_after(100):  # virtual seconds
        results = await batch_fetch(fetch, range(6), concurrency=6, max_per_second=4)
    assert results == list(range(6))
    assert [round(s - t0, 6) for s in starts] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


def test_start_spacer_reserves_evenly_spaced_slots_and_saves_no_burst() -> None:
    now = [100.0]
    spacer = _StartSpacer(10, lambda: now[0])
    assert [round(spacer.reserve(), 6) for _ in range(3)] == [0.0, 0.1, 0.2]
    now[0] = 100.05
    assert round(spacer.reserve(), 6) == 0.25  # queued behind the slots already taken
    now[0] = 500.0  # long idle: the next call goes at once, the one after waits
    assert [round(spacer.reserve(), 6) for _ in range(2)] == [0.0, 0.1]


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"item_timeout": -1}, "item_timeout"),
        ({"item_timeout": 0}, "item_timeout"),
        ({"item_timeout": math.nan}, "item_timeout"),
        ({"max_per_second": 0}, "max_per_second"),
        ({"max_per_second": -5}, "max_per_second"),
        ({"max_per_second": math.inf}, "max_per_second"),
        ({"max_per_second": "10"}, "max_per_second"),
    ],
)
@pytest.mark.anyio
async def test_batch_fetch_rejects_bad_arguments(kwargs: dict[str, Any], names: str) -> None:
    probe = Probe()
    with pytest.raises(ConfigurationError, match=names), anyio.fail_after(DEADLINE):
        await batch_fetch(probe, [1], **kwargs)
    assert not probe.calls


@pytest.mark.anyio
async def test_batch_fetch_rejects_a_non_callable() -> None:
    with pytest.raises(ConfigurationError, match="fn"), anyio.fail_after(DEADLINE):
        await batch_fetch(42, [1])  # type: ignore[call-overload]


# --- BatchLoader -------------------------------------------------------------


class Store:
    """A ``load_many`` recording its calls: even keys exist, a key in ``poison`` fails its batch.

    Keys other than ints (see :class:`Hostile`) are never found.
    """

    def __init__(self, poison: set[int] | None = None, yields: int = 0) -> None:
        self.calls: list[list[Any]] = []
        self.poison = poison or set()
        self.yields = yields

    async def __call__(self, keys: list[Any]) -> dict[int, int]:
        self.calls.append(list(keys))
        ints = [k for k in keys if isinstance(k, int)]
        await checkpoints(self.yields)
        if self.poison & set(ints):
            raise LookupError(f"batch {ints} failed")
        return {k: k * 10 for k in ints if k % 2 == 0}


class Hostile:
    """A hashable key whose equality check raises: two of them collide in any dict."""

    def __hash__(self) -> int:
        return 1_000_003

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")


async def load_concurrently(loader: BatchLoader[int, int], keys: list[int]) -> list[Any]:
    """``loader.load(key)`` for every key in its own task; results or exceptions, in order."""
    out: list[Any] = [None] * len(keys)

    async def one(i: int, key: int) -> None:
        try:
            out[i] = await loader.load(key)
        except LookupError as exc:
            out[i] = exc

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for i, key in enumerate(keys):
                tg.start_soon(one, i, key)
    return out


@BOTH
@pytest.mark.anyio
async def test_loads_in_one_turn_become_one_deduplicated_call() -> None:
    store = Store()
    loader = BatchLoader(store)
    keys = [4, 1, 4, 2, 3, 2]
    assert await load_concurrently(loader, keys) == [40, None, 40, 20, None, 20]
    assert len(store.calls) == 1
    assert sorted(store.calls[0]) == [1, 2, 3, 4]
    assert loader.stats() == BatchLoaderStats(batches=1, keys_loaded=4, largest_batch=4)


@BOTH
@pytest.mark.anyio
async def test_batches_are_split_at_max_batch_size() -> None:
    store = Store()
    loader = BatchLoader(store, max_batch_size=10)
    keys = list(range(25))
    assert await load_concurrently(loader, keys) == [k * 10 if k % 2 == 0 else None for k in keys]
    assert sorted(len(call) for call in store.calls) == [5, 10, 10]
    assert sorted(k for call in store.calls for k in call) == keys
    assert loader.stats().as_dict() == {"batches": 3, "keys_loaded": 25, "largest_batch": 10}


@BOTH
@pytest.mark.anyio
async def test_load_many_is_aligned_with_its_keys() -> None:
    store = Store()
    loader = BatchLoader(store, max_batch_size=2)
    with anyio.fail_after(DEADLINE):
        assert await loader.load_many([2, 3, 2, 8, 6]) == [20, None, 20, 80, 60]
        assert await loader.load_many([]) == []
    assert sorted(store.calls) == [[2, 3], [8, 6]]


@BOTH
@pytest.mark.anyio
async def test_a_failing_batch_fails_only_its_own_waiters() -> None:
    store = Store(poison={3})
    loader = BatchLoader(store, max_batch_size=2)
    keys = [1, 2, 3, 4, 5, 6]
    results = await load_concurrently(loader, keys)
    [bad] = [call for call in store.calls if 3 in call]
    for key, result in zip(keys, results, strict=True):
        if key in bad:
            assert isinstance(result, LookupError)
        else:
            assert result == (key * 10 if key % 2 == 0 else None)
    assert len(store.calls) == 3


@BOTH
@pytest.mark.anyio
async def test_a_shared_error_keeps_a_short_traceback() -> None:
    loader = BatchLoader(Store(poison={1}))
    results = await load_concurrently(loader, [1] * 50)
    error = results[0]
    assert all(r is error for r in results)
    depth = 0
    tb = error.__traceback__
    while tb is not None:
        depth, tb = depth + 1, tb.tb_next
    assert depth < 10


@BOTH
@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    waiters=st.lists(
        st.tuples(st.integers(0, 20), st.none() | st.integers(0, 6)), min_size=1, max_size=30
    ),
    max_batch_size=st.integers(1, 8),
    poison=st.sets(st.integers(0, 20), max_size=3),
    yields=st.integers(0, 3),
)
async def test_loader_survives_cancellation_and_failures_at_any_point(
    waiters: list[tuple[int, int | None]], max_batch_size: int, poison: set[int], yields: int
) -> None:
    store = Store(poison, yields)
    loader = BatchLoader(store, max_batch_size=max_batch_size)
    outcomes: dict[int, Any] = {}
    before = task_ids()

    async def cancel_in(scope: anyio.CancelScope, n: int) -> None:
        await checkpoints(n)
        scope.cancel()

    async def waiter(i: int, key: int, cancel_after: int | None) -> None:
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                tg.start_soon(cancel_in, scope, cancel_after)
            try:
                outcomes[i] = await loader.load(key)
            except LookupError as exc:
                outcomes[i] = exc

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for i, (key, cancel_after) in enumerate(waiters):
                tg.start_soon(waiter, i, key, cancel_after)

    distinct = {key for key, _ in waiters}
    # All keys were requested in one turn: each is loaded exactly once, even
    # when the caller that sends its batch is cancelled.
    assert sorted(k for call in store.calls for k in call) == sorted(distinct)
    assert len(store.calls) == math.ceil(len(distinct) / max_batch_size)
    batch_of = {k: call for call in store.calls for k in call}
    for i, (key, cancel_after) in enumerate(waiters):
        if cancel_after is None:
            assert i in outcomes
        if i not in outcomes:
            continue
        if poison & set(batch_of[key]):
            assert isinstance(outcomes[i], LookupError)
        else:
            assert outcomes[i] == (key * 10 if key % 2 == 0 else None)
    stats = loader.stats()
    assert stats.batches == len(store.calls)
    assert stats.keys_loaded == len(distinct)
    assert stats.largest_batch == max(map(len, store.calls))
    assert task_ids() == before
    # Nothing is left half-queued: a later load is a fresh batch of its own.
    with anyio.fail_after(DEADLINE):
        assert await loader.load(100) == 1000
    assert store.calls[-1] == [100]


@BOTH
@pytest.mark.anyio
async def test_cancelling_the_sender_does_not_cancel_its_batch() -> None:
    started, release = anyio.Event(), anyio.Event()
    calls: list[list[int]] = []

    async def load_many(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        started.set()
        await release.wait()
        return {k: -k for k in keys}

    # A long window: the first caller opens the batch and waits until it is full.
    loader = BatchLoader(load_many, max_batch_size=2, batch_window=60)
    got: dict[str, int | None] = {}

    async def load(name: str, key: int, scope: anyio.CancelScope) -> None:
        with scope:
            got[name] = await loader.load(key)

    sender_scope = anyio.CancelScope()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            try:
                tg.start_soon(load, "sender", 1, sender_scope)
                await anyio.wait_all_tasks_blocked()  # the sender has opened the batch
                tg.start_soon(load, "other", 2, anyio.CancelScope())
                await started.wait()
                sender_scope.cancel()
                await anyio.wait_all_tasks_blocked()
                assert "sender" not in got  # its cancellation waits for the batch (shield)
            finally:
                release.set()  # never leave a shielded load waiting, even when failing
    assert got == {"other": -2}  # the sender's result is dropped: it was cancelled
    assert sender_scope.cancelled_caught
    assert calls == [[1, 2]]


@BOTH
@pytest.mark.anyio
async def test_batch_window_collects_keys_across_turns_and_a_full_batch_goes_at_once() -> None:
    store = Store()
    loader = BatchLoader(store, max_batch_size=3, batch_window=60)

    async def late(key: int) -> None:
        await checkpoints(5)  # several turns later, well within the window
        await loader.load(key)

    with anyio.fail_after(DEADLINE):  # 60 s would be waited if a full batch waited
        async with anyio.create_task_group() as tg:
            tg.start_soon(loader.load, 2)
            tg.start_soon(late, 4)
            tg.start_soon(late, 6)
    assert len(store.calls) == 1
    assert sorted(store.calls[0]) == [2, 4, 6]


@pytest.mark.anyio
async def test_a_key_requested_after_its_batch_was_sent_starts_a_new_batch() -> None:
    sent = anyio.Event()
    release = anyio.Event()
    calls: list[list[int]] = []

    async def load_many(keys: list[int]) -> dict[int, int]:
        calls.append(keys)
        sent.set()
        await release.wait()
        return {k: k for k in keys}

    loader = BatchLoader(load_many)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loader.load, 1)
            await sent.wait()
            tg.start_soon(loader.load, 1)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert calls == [[1], [1]]  # nothing cached, nothing joined in flight


@pytest.mark.anyio
async def test_a_non_mapping_result_is_a_type_error_for_every_waiter() -> None:
    async def load_many(keys: list[int]) -> Any:
        return [k * 2 for k in keys]

    loader = BatchLoader(load_many)
    with pytest.raises(TypeError, match="mapping"), anyio.fail_after(DEADLINE):
        await loader.load(1)


# --- BatchLoader: bad keys ------------------------------------------------------


@BOTH
@pytest.mark.anyio
async def test_an_unhashable_key_fails_only_its_caller_and_the_loader_keeps_working() -> None:
    store = Store()
    loader: BatchLoader[Any, int] = BatchLoader(store)
    got: dict[str, Any] = {}

    async def bad() -> None:
        with pytest.raises(ConfigurationError, match="key 1 is list") as info:
            await loader.load_many([2, [4]])
        got["bad"] = info.value

    async def good() -> None:
        got["good"] = await loader.load(6)

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bad)
            tg.start_soon(good)
        assert got["good"] == 60
        assert store.calls == [[6]]  # nothing of the bad call was queued
        with pytest.raises(ConfigurationError, match="hashable"):
            await loader.load({"id": 1})
        assert await loader.load(2) == 20  # the issue: this used to hang forever
        assert await loader.load_many([2, 3]) == [20, None]
    assert store.calls == [[6], [2], [2, 3]]
    assert isinstance(got["bad"], ConfigurationError)


@BOTH
@pytest.mark.anyio
async def test_a_key_whose_equality_raises_leaves_no_batch_or_waiter_behind() -> None:
    store = Store()
    loader: BatchLoader[Any, int] = BatchLoader(store)
    first, second = Hostile(), Hostile()
    with anyio.fail_after(DEADLINE):
        with pytest.raises(RuntimeError, match="hostile"):
            await loader.load_many([4, first, second])  # second collides with first
        # What was queued before the failure was still sent, not left open.
        assert store.calls == [[4, first]]
        assert await loader.load_many([4, 5, first]) == [40, None, None]
    assert store.calls[-1] == [4, 5, first]
    assert loader.stats() == BatchLoaderStats(batches=2, keys_loaded=5, largest_batch=3)


@BOTH
@pytest.mark.anyio
@settings(max_examples=150, deadline=None)
@given(
    callers=st.lists(
        st.tuples(
            st.lists(st.integers(0, 20) | st.sampled_from(["unhashable", "hostile"]), max_size=4),
            st.none() | st.integers(0, 6),
        ),
        min_size=1,
        max_size=12,
    ),
    max_batch_size=st.integers(1, 5),
    poison=st.sets(st.integers(0, 20), max_size=3),
    yields=st.integers(0, 3),
)
async def test_loader_survives_bad_keys_failures_and_cancellation_at_any_point(
    callers: list[tuple[list[int | str], int | None]],
    max_batch_size: int,
    poison: set[int],
    yields: int,
) -> None:
    store = Store(poison, yields)
    loader: BatchLoader[Any, int] = BatchLoader(store, max_batch_size=max_batch_size)
    requests: list[list[Any]] = [
        [[k] if k == "unhashable" else Hostile() if k == "hostile" else k for k in kinds]
        for kinds, _ in callers
    ]
    outcomes: dict[int, Any] = {}
    before = task_ids()

    async def cancel_in(scope: anyio.CancelScope, n: int) -> None:
        await checkpoints(n)
        scope.cancel()

    async def caller(i: int, cancel_after: int | None) -> None:
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                tg.start_soon(cancel_in, scope, cancel_after)
            try:
                outcomes[i] = await loader.load_many(requests[i])
            except (ConfigurationError, LookupError, RuntimeError) as exc:
                outcomes[i] = exc

    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            for i, (_, cancel_after) in enumerate(callers):
                tg.start_soon(caller, i, cancel_after)

    queued = [k for call in store.calls for k in call]
    ints_queued = [k for k in queued if isinstance(k, int)]
    assert len(ints_queued) == len(set(ints_queued))  # each key loaded once, however it went
    assert len(queued) == len({id(k) if isinstance(k, Hostile) else k for k in queued})
    assert len(store.calls) == math.ceil(len(queued) / max_batch_size)  # all in one turn
    call_of = {id(k) if isinstance(k, Hostile) else k: call for call in store.calls for k in call}
    for i, ((kinds, cancel_after), keys) in enumerate(zip(callers, requests, strict=True)):
        if "unhashable" in kinds:
            # Refused before anything is queued, whatever else happens.
            assert isinstance(outcomes[i], ConfigurationError)
            assert "list" in str(outcomes[i])
            continue
        if cancel_after is None:
            assert i in outcomes
        if i not in outcomes:
            continue
        outcome = outcomes[i]
        if isinstance(outcome, RuntimeError):
            assert "hostile" in kinds
            continue
        calls = [call_of[id(k) if isinstance(k, Hostile) else k] for k in keys]
        if any(poison & {k for k in call if isinstance(k, int)} for call in calls):
            assert isinstance(outcome, LookupError)
        else:
            expected = [k * 10 if isinstance(k, int) and k % 2 == 0 else None for k in keys]
            assert outcome == expected
    # Keys only a refused caller asked for were never loaded.
    refused = {k for kinds, _ in callers if "unhashable" in kinds for k in kinds}
    others = {k for kinds, _ in callers if "unhashable" not in kinds for k in kinds}
    assert not (set(ints_queued) & (refused - others))
    assert task_ids() == before
    # Nothing is left half-queued: every key loads afresh, in new batches only.
    final = sorted((set(ints_queued) - poison) | {100, 101})
    sent = len(store.calls)
    with anyio.fail_after(DEADLINE):
        assert await loader.load_many(final) == [k * 10 if k % 2 == 0 else None for k in final]
    assert sorted(k for call in store.calls[sent:] for k in call) == final
    assert len(store.calls) - sent == math.ceil(len(final) / max_batch_size)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_batch_size": 1.5}, "max_batch_size"),
        ({"batch_window": -0.1}, "batch_window"),
        ({"batch_window": math.nan}, "batch_window"),
    ],
)
def test_loader_rejects_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        BatchLoader(Store(), **kwargs)


def test_loader_rejects_a_non_callable() -> None:
    with pytest.raises(ConfigurationError, match="load_many"):
        BatchLoader({})  # type: ignore[arg-type]


def test_stats_start_at_zero_and_repr_is_informative() -> None:
    loader = BatchLoader(Store(), max_batch_size=7)
    assert loader.stats().as_dict() == {"batches": 0, "keys_loaded": 0, "largest_batch": 0}
    assert "max_batch_size=7" in repr(loader)


# --- real PostgreSQL ---------------------------------------------------------


@pytest.mark.anyio
async def test_loader_turns_500_lookups_into_few_queries_on_postgres(postgres_dsn: str) -> None:
    table = sql.Identifier(f"availability_{uuid.uuid4().hex[:12]}")
    max_batch_size = 64
    queries: list[int] = []
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=10) as pool:
        async with pool.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (tmdb_id integer PRIMARY KEY, status text NOT NULL)"
                ).format(table)
            )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT g, CASE WHEN g % 3 = 0 THEN 'available' "
                    "ELSE 'pending' END FROM generate_series(1, 400) AS g"
                ).format(table)
            )
        try:

            async def availability(ids: list[int]) -> dict[int, str]:
                queries.append(len(ids))
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        sql.SQL("SELECT tmdb_id, status FROM {} WHERE tmdb_id = ANY(%s)").format(
                            table
                        ),
                        [ids],
                    )
                    return dict(await cur.fetchall())

            loader = BatchLoader(availability, max_batch_size=max_batch_size)
            ids = list(range(1, 501))  # 401..500 are unknown
            results: dict[int, str | None] = {}

            async def lookup(tmdb_id: int) -> None:
                results[tmdb_id] = await loader.load(tmdb_id)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for tmdb_id in ids:
                        tg.start_soon(lookup, tmdb_id)
        finally:
            async with pool.connection() as conn:
                await conn.execute(sql.SQL("DROP TABLE {}").format(table))

    assert len(queries) == math.ceil(500 / max_batch_size)
    assert sum(queries) == 500
    for tmdb_id in ids:
        if tmdb_id > 400:
            assert results[tmdb_id] is None
        else:
            assert results[tmdb_id] == ("available" if tmdb_id % 3 == 0 else "pending")
    assert loader.stats() == BatchLoaderStats(
        batches=len(queries), keys_loaded=500, largest_batch=max_batch_size
    )


@BOTH
@pytest.mark.anyio
async def test_a_sync_function_is_refused_not_turned_into_nones() -> None:
    def not_async(item: int) -> int:
        return item

    with (
        pytest.raises(ConfigurationError, match="returned int, not an awaitable"),
        anyio.fail_after(DEADLINE),
    ):
        await batch_fetch(not_async, [1, 2, 3])  # type: ignore[arg-type]
