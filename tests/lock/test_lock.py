"""AsyncLock (asyncio and trio, virtual time) and PgAdvisoryLock (a real PostgreSQL).

AsyncLock tests run on both backends with a virtual clock: asyncio on a loop
whose clock jumps to the next timer whenever nothing is ready, trio on
``MockClock(autojump_threshold=0)``. Timeouts and hold times therefore cost
no real time and every schedule is reproducible.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import selectors
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec

import anyio
import anyio.lowlevel
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from trio.testing import MockClock

from seerrperf import (
    AsyncLock,
    ConfigurationError,
    LockStatistics,
    LockTimeout,
    PgAdvisoryLock,
    SeerrperfError,
    async_pool_factory,
)
from seerrperf._pg.advisory import _advisory_key

from . import _lock_worker

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
            stats = lock.statistics()
            assert (stats.held_keys, stats.waiting_tasks) == (1, 2)
            tg.start_soon(_expect_timeout, lock, "k", 5)
            await anyio.sleep(6)  # virtual
    stats = lock.statistics()
    assert stats == LockStatistics(
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
        assert lock.statistics().waiting_tasks == 1
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
            assert lock.statistics().waiting_tasks == 2
            await anyio.sleep(2)  # virtual
            assert lock.statistics().waiting_tasks == 1
    [(error, waited)] = errors
    assert waited == pytest.approx(1.5)
    assert "within 1.5 s" in str(error)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, SeerrperfError)
    assert got == ["patient"]
    assert lock.statistics().timeouts == 1
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
    assert lock.statistics().timeouts == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_a_bad_timeout_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be"):
        AsyncLock()("k", timeout=bad)


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
    assert lock.statistics().waiting_tasks == 0


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
            assert lock.statistics().waiting_tasks == 10_000
    assert len(got) == 10_000
    assert got == asked
    assert len(lock) == 0


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_released_keys_are_forgotten() -> None:
    lock = AsyncLock()
    for i in range(10_000):
        async with lock(("movie", i)):
            pass
    async with anyio.create_task_group() as tg:
        async with lock("contended"):
            tg.start_soon(_enter, lock, "contended", None)
            await anyio.wait_all_tasks_blocked()
    assert len(lock) == 0
    assert lock._owners == {}
    assert lock._queues == {}


@pytest.mark.anyio
@fails_instead_of_hanging
async def test_departed_waiters_do_not_pile_up_behind_a_long_holder() -> None:
    lock = AsyncLock()
    async with anyio.create_task_group() as tg:
        async with lock("k"):
            for _ in range(50):
                for _ in range(20):
                    tg.start_soon(_expect_timeout, lock, "k", 1)
                await anyio.sleep(2)  # virtual: all 20 time out
            assert len(lock._queues["k"]) <= 1
            tg.start_soon(_enter, lock, "k", None)
            await anyio.wait_all_tasks_blocked()
            assert lock.statistics().waiting_tasks == 1
    assert lock.statistics().timeouts == 1000
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
    stats = lock.statistics()
    assert stats.waiting_tasks == 0
    assert stats.acquisitions == sum(len(g) for g in got.values())
    assert stats.timeouts == outcome.count("timeout")


# --- advisory-lock keys (no server) --------------------------------------------------------


def test_advisory_keys_are_stable_across_processes_and_releases() -> None:
    # Pinned: a change would let old and new workers hold "the same" key at once.
    assert _advisory_key("seerrperf", ("movie", 603)) == -3261018859007556879
    assert _advisory_key("seerrperf", None) == _advisory_key("seerrperf", None)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("movie", 603), ("tv", 603)),
        (603, "603"),
        (1, True),
        (0, False),
        (None, ()),
        ((), ((),)),
        (("ab", "c"), ("a", "bc")),
        (b"x", "x"),
        ((1, (2, 3)), ((1, 2), 3)),
        (-1, 255),
        (2**64, 0),
    ],
)
def test_different_keys_get_different_ids(a: object, b: object) -> None:
    assert _advisory_key("ns", a) != _advisory_key("ns", b)


def test_the_namespace_separates_applications() -> None:
    assert _advisory_key("app-a", ("movie", 1)) != _advisory_key("app-b", ("movie", 1))


def test_ids_are_signed_64_bit() -> None:
    ids = [_advisory_key("ns", i) for i in range(2000)]
    assert all(-(2**63) <= i < 2**63 for i in ids)
    assert min(ids) < 0 < max(ids)


@pytest.mark.parametrize("bad", [1.5, [1], {"a": 1}, ("movie", 1.0), frozenset({1}), object()])
def test_keys_without_a_canonical_encoding_are_rejected(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="key must be str, int, bytes, bool, None"):
        _advisory_key("ns", bad)


# --- PgAdvisoryLock on a real PostgreSQL ---------------------------------------------------

pg = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # psycopg's async needs asyncio


@pytest.fixture
async def pool(postgres_dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=2) as p:
        yield p


@pytest.fixture
async def table(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"lock_request_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as conn:
        await conn.execute(_lock_worker.create_table_sql(name))
        yield name
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


async def _advisory_locks_held(conn: psycopg.AsyncConnection[Any], lock_id: int) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s AND objid = %s AND objsubid = 1",
        ((lock_id >> 32) & 0xFFFFFFFF, lock_id & 0xFFFFFFFF),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pg
@pytest.mark.anyio
async def test_the_block_gets_a_connection_holding_the_lock_in_a_transaction(
    pool: AsyncConnectionPool[Any], postgres_dsn: str
) -> None:
    adv = PgAdvisoryLock(pool)
    lock_id = adv.advisory_key(("movie", 603))
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as observer:
        async with adv(("movie", 603), timeout=5) as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            cur = await conn.execute("SHOW lock_timeout")  # the lock's own is undone
            assert await cur.fetchone() == ("0",)
            assert adv.locked(("movie", 603))
            assert await _advisory_locks_held(observer, lock_id) == 1
        assert await _advisory_locks_held(observer, lock_id) == 0
    assert len(adv) == 0
    assert adv.statistics().acquisitions == 1
    assert "namespace='seerrperf'" in repr(adv)


@pg
@pytest.mark.anyio
async def test_the_transaction_commits_on_success_and_rolls_back_on_error(
    pool: AsyncConnectionPool[Any], table: str
) -> None:
    adv = PgAdvisoryLock(pool)
    assert await adv.dispatch(("movie", 1), _lock_worker.create_request, table, 1) is True

    async def create_then_fail(conn: psycopg.AsyncConnection[Any]) -> None:
        assert await _lock_worker.create_request(conn, table, 2) is True
        raise Boom

    with pytest.raises(Boom):
        await adv.dispatch(("movie", 2), create_then_fail)
    assert await adv.dispatch(("movie", 1), _lock_worker.create_request, table, 1) is False
    assert await adv.dispatch(("movie", 2), _lock_worker.create_request, table, 2) is True


@pg
@pytest.mark.anyio
async def test_a_lock_held_by_another_session_times_out(
    pool: AsyncConnectionPool[Any], postgres_dsn: str
) -> None:
    adv = PgAdvisoryLock(pool, namespace="timeout-test")
    key = ("movie", 7)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (adv.advisory_key(key),))
        start = anyio.current_time()
        with pytest.raises(LockTimeout) as info:
            async with adv(key, timeout=0.2):
                pytest.fail("the lock is held elsewhere")
        assert 0.15 < anyio.current_time() - start < 5
        assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
        await other.execute("SELECT pg_advisory_unlock(%s)", (adv.advisory_key(key),))
    assert adv.statistics().timeouts == 1
    async with adv(key, timeout=5) as conn:  # the pooled connection is fine
        await conn.execute("SELECT 1")
    assert pool.get_stats().get("returns_bad", 0) == 0


@pg
@pytest.mark.anyio
async def test_local_waiters_do_not_pin_pool_connections(
    pool: AsyncConnectionPool[Any], table: str
) -> None:
    adv = PgAdvisoryLock(pool)  # the pool has max_size=2
    results: list[bool] = []

    async def request() -> None:
        results.append(await adv.dispatch(("movie", 9), _lock_worker.create_request, table, 9))

    async with anyio.create_task_group() as tg:
        async with adv(("movie", 9)):
            for _ in range(20):
                tg.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            assert adv.statistics().waiting_tasks == 20
            pool_stats = pool.get_stats()
            assert pool_stats.get("requests_waiting", 0) == 0
            assert pool_stats["pool_size"] - pool_stats.get("pool_available", 0) == 1
    assert sorted(results) == [False] * 19 + [True]
    stats = adv.statistics()
    assert (stats.acquisitions, stats.contended_acquisitions, stats.held_keys) == (21, 20, 0)


@pg
@pytest.mark.anyio
async def test_cancelling_a_database_wait_leaves_nothing_behind(
    pool: AsyncConnectionPool[Any], postgres_dsn: str
) -> None:
    adv = PgAdvisoryLock(pool, namespace="cancel-test")
    key = ("tv", 1399)
    lock_id = adv.advisory_key(key)
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (lock_id,))
        with anyio.move_on_after(0.3) as scope:
            async with adv(key):  # no timeout: waits in the server until cancelled
                pytest.fail("the lock is held elsewhere")
        assert scope.cancelled_caught
        cur = await other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        )
        assert await cur.fetchone() == (0,)
        await other.execute("SELECT pg_advisory_unlock(%s)", (lock_id,))
    assert len(adv) == 0
    async with adv(key, timeout=5) as conn:
        await conn.execute("SELECT 1")


@pg
@pytest.mark.anyio
async def test_pg_lock_arguments_are_checked(pool: AsyncConnectionPool[Any]) -> None:
    with pytest.raises(ConfigurationError, match="pool must be"):
        PgAdvisoryLock("postgresql://localhost/db")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="namespace must be"):
        PgAdvisoryLock(pool, namespace="")
    adv = PgAdvisoryLock(pool)
    with pytest.raises(ConfigurationError, match="key must be"):
        adv(1.5)
    with pytest.raises(ConfigurationError, match="timeout must be"):
        adv("k", timeout=-1)
    async with adv("k"):
        with pytest.raises(RuntimeError, match="not re-entrant"):
            async with adv("k"):
                pass


# --- many processes -----------------------------------------------------------------------


def _run_processes(dsn: str, table: str, *, advisory: bool, window: float) -> list[dict[str, Any]]:
    """4 processes x 25 tasks, all creating the request for one movie."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(_lock_worker.PROCESSES)
    inside = ctx.Barrier(_lock_worker.PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_lock_worker.main,
            args=(dsn, table, advisory, start, inside, window, results),
        )
        for _ in range(_lock_worker.PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return reports


def _count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        result = row.fetchone()
    assert result is not None
    return int(result[0])


@pytest.fixture
def sync_table(postgres_dsn: str) -> Iterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        name = f"lock_mp_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(_lock_worker.create_table_sql(name))
        names.append(name)
        return name

    yield make
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


@pytest.mark.slow
def test_advisory_lock_admits_one_process_at_a_time(
    postgres_dsn: str, sync_table: Callable[[], str]
) -> None:
    # A critical section that finds no request waits up to `window` seconds
    # for the other processes to join it between its check and its insert.
    # Under the advisory lock none can: the wait expires, one row results,
    # and every later critical section finds that row.
    table = sync_table()
    reports = _run_processes(postgres_dsn, table, advisory=True, window=0.5)
    assert _count_rows(postgres_dsn, table) == 1
    assert sum(r["inserted"] for r in reports) == 1
    met = [r["met_others_inside"] for r in reports]
    assert met.count(False) == 1
    assert met.count(None) == _lock_worker.PROCESSES - 1
    assert sum(r["acquisitions"] for r in reports) == 100


@pytest.mark.slow
def test_a_per_process_lock_lets_every_process_insert(
    postgres_dsn: str, sync_table: Callable[[], str]
) -> None:
    # The same run with only AsyncLock: all four processes are inside their
    # first critical section together (the barrier proves it), all four saw
    # no request, all four insert one.
    table = sync_table()
    reports = _run_processes(postgres_dsn, table, advisory=False, window=60)
    assert all(r["met_others_inside"] is True for r in reports)
    assert _count_rows(postgres_dsn, table) == _lock_worker.PROCESSES
    assert sum(r["acquisitions"] for r in reports) == 100


@pg
@pytest.mark.anyio
async def test_advisory_timeout_zero_takes_a_free_key(pool: AsyncConnectionPool[Any]) -> None:
    await pool.wait()  # a connection is idle: a zero wait for it must still succeed
    adv = PgAdvisoryLock(pool, namespace="zero")
    async with adv(("movie", 1), timeout=0) as conn:
        await conn.execute("SELECT 1")
    assert adv.statistics().acquisitions == 1


@pg
@pytest.mark.anyio
async def test_no_free_connection_within_the_locks_timeout_is_a_lock_timeout(
    pool: AsyncConnectionPool[Any],
) -> None:
    adv = PgAdvisoryLock(pool, namespace="busy")  # the pool has max_size=2
    async with pool.connection(), pool.connection():
        with pytest.raises(LockTimeout, match="no pooled connection") as info:
            async with adv(("movie", 1), timeout=0.05):
                pytest.fail("no connection was free")
    assert isinstance(info.value.__cause__, PoolTimeout)
    assert adv.statistics().timeouts == 1
