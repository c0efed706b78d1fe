"""PgAdvisoryLock: key ids (no server), behaviour on a real PostgreSQL, many processes."""

from __future__ import annotations

import functools
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from seerrperf import (
    ConfigurationError,
    LockStats,
    LockTimeout,
    PgAdvisoryLock,
    async_pool_factory,
    pool_factory,
)

from . import _lock_worker


class Boom(Exception):
    pass


# --- advisory-lock keys (no server) --------------------------------------------------------


@functools.cache
def lock_in(namespace: str) -> PgAdvisoryLock:
    """A lock on a pool that is never opened: computing key ids needs no server."""
    return PgAdvisoryLock(async_pool_factory("postgresql://localhost/db"), namespace=namespace)


def test_advisory_keys_are_stable_across_processes_and_releases() -> None:
    # Pinned: a change would let old and new workers hold "the same" key at once.
    assert lock_in("seerrperf").advisory_key(("movie", 603)) == -3261018859007556879
    assert lock_in("seerrperf").advisory_key(None) == lock_in("seerrperf").advisory_key(None)


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
    assert lock_in("ns").advisory_key(a) != lock_in("ns").advisory_key(b)


def test_the_namespace_separates_applications() -> None:
    key = ("movie", 1)
    assert lock_in("app-a").advisory_key(key) != lock_in("app-b").advisory_key(key)


def test_ids_are_signed_64_bit() -> None:
    ids = [lock_in("ns").advisory_key(i) for i in range(2000)]
    assert all(-(2**63) <= i < 2**63 for i in ids)
    assert min(ids) < 0 < max(ids)


@pytest.mark.parametrize("bad", [1.5, [1], {"a": 1}, ("movie", 1.0), frozenset({1}), object()])
def test_keys_without_a_canonical_encoding_are_rejected(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="key must be str, int, bytes, bool, None"):
        lock_in("ns").advisory_key(bad)


def test_stats_start_at_zero_and_statistics_is_a_deprecated_alias() -> None:
    adv = lock_in("stats")
    assert adv.stats() == LockStats(
        held_keys=0, waiting_tasks=0, acquisitions=0, contended_acquisitions=0, timeouts=0
    )
    with pytest.warns(DeprecationWarning, match=r"statistics\(\) is deprecated.*stats") as w:
        assert adv.statistics() == adv.stats()
    assert w[0].filename == __file__


def test_arguments_are_checked_without_a_server() -> None:
    with pytest.raises(ConfigurationError, match=r"pool must be a psycopg_pool\.AsyncConn"):
        PgAdvisoryLock("postgresql://localhost/db")  # type: ignore[arg-type]
    sync_pool = pool_factory("postgresql://localhost/db")
    with pytest.raises(ConfigurationError, match=r"got (Tuned)?ConnectionPool"):
        PgAdvisoryLock(sync_pool)  # type: ignore[arg-type]
    unopened = async_pool_factory("postgresql://localhost/db")
    for bad in ("", "bad\nname", 42):
        with pytest.raises(ConfigurationError, match="namespace must be a non-empty printable"):
            PgAdvisoryLock(unopened, namespace=bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_dispatch_refuses_what_cannot_be_called_before_taking_the_key() -> None:
    adv = lock_in("dispatch")  # its pool is never opened: a checkout would fail differently
    with pytest.raises(ConfigurationError, match="fn must be a coroutine function, got str"):
        await adv.dispatch("k", "SELECT 1")  # type: ignore[arg-type]
    assert len(adv) == 0


# --- PgAdvisoryLock on a real PostgreSQL ---------------------------------------------------


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
    assert adv.stats().acquisitions == 1
    assert "namespace='seerrperf'" in repr(adv)


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
    assert adv.stats().timeouts == 1
    async with adv(key, timeout=5) as conn:  # the pooled connection is fine
        await conn.execute("SELECT 1")
    assert pool.get_stats().get("returns_bad", 0) == 0


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
            assert adv.stats().waiting_tasks == 20
            pool_stats = pool.get_stats()
            assert pool_stats.get("requests_waiting", 0) == 0
            assert pool_stats["pool_size"] - pool_stats.get("pool_available", 0) == 1
    assert sorted(results) == [False] * 19 + [True]
    stats = adv.stats()
    assert (stats.acquisitions, stats.contended_acquisitions, stats.held_keys) == (21, 20, 0)


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


@pytest.mark.anyio
async def test_pg_lock_arguments_are_checked(pool: AsyncConnectionPool[Any]) -> None:
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


@pytest.mark.anyio
async def test_advisory_timeout_zero_takes_a_free_key(pool: AsyncConnectionPool[Any]) -> None:
    await pool.wait()  # a connection is idle: a zero wait for it must still succeed
    adv = PgAdvisoryLock(pool, namespace="zero")
    async with adv(("movie", 1), timeout=0) as conn:
        await conn.execute("SELECT 1")
    assert adv.stats().acquisitions == 1


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
    assert adv.stats().timeouts == 1
