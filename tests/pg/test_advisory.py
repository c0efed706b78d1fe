"""PgAdvisoryLock and AsyncPgAdvisoryLock: key ids (no server), behaviour on a real
PostgreSQL written once for both twins, lost locks, many processes (sync, async, mixed)."""

from __future__ import annotations

import functools
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg_pool import PoolTimeout

from seerrperf import (
    AsyncPgAdvisoryLock,
    ConfigurationError,
    LockLost,
    LockStats,
    LockTimeout,
    PgAdvisoryLock,
    SeerrperfError,
    async_pool_factory,
    pool_factory,
)

from . import _lock_worker
from ._twins import AsyncTwin, SyncTwin, Twin, advisory_locks_held

DEADLINE = 30.0


class Boom(Exception):
    pass


# --- advisory-lock keys (no server) --------------------------------------------------------


@functools.cache
def lock_in(namespace: str) -> PgAdvisoryLock:
    """A lock on a pool that is never opened: computing key ids needs no server."""
    return PgAdvisoryLock(pool_factory("postgresql://localhost/db"), namespace=namespace)


@functools.cache
def async_lock_in(namespace: str) -> AsyncPgAdvisoryLock:
    return AsyncPgAdvisoryLock(async_pool_factory("postgresql://localhost/db"), namespace=namespace)


def test_advisory_keys_are_stable_across_processes_and_releases() -> None:
    # Pinned: a change would let old and new workers hold "the same" key at once.
    assert lock_in("seerrperf").advisory_key(("movie", 603)) == -3261018859007556879
    assert lock_in("seerrperf").advisory_key(None) == lock_in("seerrperf").advisory_key(None)


@pytest.mark.parametrize("key", [("movie", 603), 603, "603", None, (b"x", (True, -1))])
def test_the_sync_and_the_async_lock_give_a_key_the_same_id(key: object) -> None:
    # What lets a sync worker and an async worker exclude each other.
    assert lock_in("ns").advisory_key(key) == async_lock_in("ns").advisory_key(key)


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
    with pytest.raises(ConfigurationError, match=r"pool must be a psycopg_pool\.ConnectionPool"):
        PgAdvisoryLock("postgresql://localhost/db")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"pool must be a psycopg_pool\.AsyncConn"):
        AsyncPgAdvisoryLock("postgresql://localhost/db")  # type: ignore[arg-type]
    sync_pool = pool_factory("postgresql://localhost/db")
    with pytest.raises(ConfigurationError, match=r"got (Tuned)?ConnectionPool"):
        AsyncPgAdvisoryLock(sync_pool)  # type: ignore[arg-type]
    for bad in ("", "bad\nname", 42):
        with pytest.raises(ConfigurationError, match="namespace must be a non-empty printable"):
            PgAdvisoryLock(sync_pool, namespace=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="namespace must be a non-empty printable"):
            AsyncPgAdvisoryLock(  # type: ignore[arg-type]
                async_pool_factory("postgresql://localhost/db"), namespace=bad
            )


@pytest.mark.anyio
async def test_dispatch_refuses_what_cannot_be_called_before_taking_the_key() -> None:
    adv = async_lock_in("dispatch")  # its pool is never opened: a checkout would fail otherwise
    with pytest.raises(ConfigurationError, match="fn must be a coroutine function, got str"):
        await adv.dispatch("k", "SELECT 1")  # type: ignore[arg-type]
    assert len(adv) == 0


# --- both advisory locks on a real PostgreSQL, written once ----------------------------------


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest) -> Iterator[Twin]:
    if request.param == "sync":
        yield SyncTwin()
        return
    with start_blocking_portal("asyncio") as portal:
        yield AsyncTwin(portal)


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    name = f"lock_request_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(_lock_worker.create_table_sql(name))
        yield name
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def _insert(table: str, tmdb_id: int) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (media_type, tmdb_id, pid) VALUES ('movie', {}, pg_backend_pid())"
    ).format(sql.Identifier(table), sql.Literal(tmdb_id))


def _rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        result = row.fetchone()
    assert result is not None
    return int(result[0])


def _threads(n: int, target: Callable[[], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()


def _eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_the_block_gets_a_connection_holding_the_lock_in_a_transaction(
    twin: Twin, postgres_dsn: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        lock_id = adv.advisory_key(("movie", 603))
        with twin.hold(adv, ("movie", 603), timeout=5) as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert twin.run(conn, "SHOW lock_timeout") == [("0",)]  # the lock's own is undone
            assert adv.locked(("movie", 603))
            assert advisory_locks_held(postgres_dsn, lock_id) == 1
        assert advisory_locks_held(postgres_dsn, lock_id) == 0
        assert len(adv) == 0
        assert adv.stats() == LockStats(0, 0, 1, 0, 0)
        name = "PgAdvisoryLock" if twin.kind == "sync" else "AsyncPgAdvisoryLock"
        assert repr(adv) == f"<{name} namespace='seerrperf' held=0>"


def test_the_transaction_commits_on_success_and_rolls_back_on_error(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        with twin.hold(adv, ("movie", 1)) as conn:
            twin.run(conn, _insert(table, 1))

        def insert_then_fail() -> None:
            with twin.hold(adv, ("movie", 2)) as conn:
                twin.run(conn, _insert(table, 2))
                raise Boom

        with pytest.raises(Boom):
            insert_then_fail()
    assert _rows(postgres_dsn, table) == 1


def test_a_lock_held_by_another_session_times_out(twin: Twin, postgres_dsn: str) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool, namespace="timeout-test")
        key = ("movie", 7)
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (adv.advisory_key(key),))
            begin = time.monotonic()
            with pytest.raises(LockTimeout) as info, twin.hold(adv, key, timeout=0.2):
                pytest.fail("the lock is held elsewhere")
            assert 0.15 < time.monotonic() - begin < DEADLINE
            assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
            other.execute("SELECT pg_advisory_unlock(%s)", (adv.advisory_key(key),))
        assert adv.stats().timeouts == 1
        with twin.hold(adv, key, timeout=5) as conn:  # the pooled connection is fine
            twin.run(conn, "SELECT 1")
        assert twin.pool_stats(pool).get("returns_bad", 0) == 0


def test_local_waiters_do_not_pin_pool_connections(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        results: list[bool] = []

        def request() -> None:
            with twin.hold(adv, ("movie", 9), timeout=DEADLINE) as conn:
                found = twin.run(
                    conn,
                    sql.SQL("SELECT 1 FROM {} WHERE tmdb_id = 9").format(sql.Identifier(table)),
                )
                if not found:
                    twin.run(conn, _insert(table, 9))
                results.append(not found)

        with twin.hold(adv, ("movie", 9)):
            threads = _threads(20, request)
            _eventually(lambda: adv.stats().waiting_tasks == 20, "20 local waiters")
            pool_stats = twin.pool_stats(pool)
            assert pool_stats.get("requests_waiting", 0) == 0
            assert pool_stats["pool_size"] - pool_stats.get("pool_available", 0) == 1
        _join(threads)
    assert sorted(results) == [False] * 19 + [True]
    stats = adv.stats()
    assert (stats.acquisitions, stats.contended_acquisitions, stats.held_keys) == (21, 20, 0)


def test_lock_arguments_are_checked(twin: Twin, postgres_dsn: str) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        with pytest.raises(ConfigurationError, match="key must be"):
            adv(1.5)
        with pytest.raises(ConfigurationError, match="timeout must be"):
            adv("k", timeout=-1)


def test_a_thread_holding_a_key_cannot_take_it_again(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = PgAdvisoryLock(pool)
        with adv("k"):
            with pytest.raises(RuntimeError, match="not re-entrant"), adv("k"):
                pass


@pytest.mark.anyio
async def test_a_task_holding_a_key_cannot_take_it_again(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = AsyncPgAdvisoryLock(pool)
        async with adv("k"):
            with pytest.raises(RuntimeError, match="not re-entrant"):
                async with adv("k"):
                    pass


def test_timeout_zero_takes_a_free_key(twin: Twin, postgres_dsn: str) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool, namespace="zero")  # a connection is idle: a zero wait succeeds
        with twin.hold(adv, ("movie", 1), timeout=0) as conn:
            twin.run(conn, "SELECT 1")
        assert adv.stats().acquisitions == 1


def test_no_free_connection_within_the_locks_timeout_is_a_lock_timeout(
    twin: Twin, postgres_dsn: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=1) as pool:
        adv = twin.lock(pool, namespace="busy")
        other = twin.lock(pool, namespace="busy-other")
        with twin.hold(other, "takes the only connection"):
            with pytest.raises(LockTimeout, match="no pooled connection") as info:
                with twin.hold(adv, ("movie", 1), timeout=0.05):
                    pytest.fail("no connection was free")
        assert isinstance(info.value.__cause__, PoolTimeout)
        assert adv.stats().timeouts == 1


# --- a lost lock is reported (issue 13 item 3) ---------------------------------------------


def _terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _free_elsewhere(dsn: str, lock_id: int) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (lock_id,)).fetchone()
    return row == (True,)


def test_a_terminated_session_caught_by_the_block_raises_lock_lost(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        key = ("movie", 42)

        def log_and_carry_on() -> None:
            with twin.hold(adv, key, timeout=5) as conn:
                twin.run(conn, _insert(table, 42))
                [(pid,)] = twin.run(conn, "SELECT pg_backend_pid()")
                _terminate(postgres_dsn, pid)
                # The server let go at once: another session takes the key meanwhile.
                assert _free_elsewhere(postgres_dsn, adv.advisory_key(key))
                try:
                    twin.run(conn, _insert(table, 43))
                except psycopg.OperationalError:
                    pass  # "log and carry on"

        with pytest.raises(LockLost, match="connection was lost while the lock was held") as info:
            log_and_carry_on()
        assert info.value.committed is False
        assert isinstance(info.value, SeerrperfError)
        assert _rows(postgres_dsn, table) == 0  # nothing the block wrote survived
        assert len(adv) == 0
        with twin.hold(adv, key, timeout=5) as conn:  # the pool replaced the dead connection
            twin.run(conn, "SELECT 1")


def test_a_session_lost_before_commit_raises_lock_lost_with_an_unknown_outcome(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)

        def lose_the_session() -> None:
            with twin.hold(adv, ("movie", 5), timeout=5) as conn:
                twin.run(conn, _insert(table, 5))
                [(pid,)] = twin.run(conn, "SELECT pg_backend_pid()")
                _terminate(postgres_dsn, pid)  # the block finds out only at commit

        with pytest.raises(LockLost, match="during COMMIT: whether the transaction") as info:
            lose_the_session()
        assert info.value.committed is None
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert _rows(postgres_dsn, table) == 0


def test_a_failed_statement_caught_by_the_block_raises_lock_lost(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)

        def swallow_a_failed_statement() -> None:
            with twin.hold(adv, ("movie", 6), timeout=5) as conn:
                twin.run(conn, _insert(table, 6))
                try:
                    twin.run(conn, "SELECT 1 / 0")
                except psycopg.errors.DivisionByZero:
                    pass

        with pytest.raises(LockLost, match="transaction is aborted") as info:
            swallow_a_failed_statement()
        assert info.value.committed is False
        assert _rows(postgres_dsn, table) == 0
        # A savepoint is the way to let a statement fail and carry on:
        with twin.hold(adv, ("movie", 6), timeout=5) as conn:
            twin.run(conn, _insert(table, 6))
            twin.run(conn, "SAVEPOINT try_it")
            with pytest.raises(psycopg.errors.DivisionByZero):
                twin.run(conn, "SELECT 1 / 0")
            twin.run(conn, "ROLLBACK TO SAVEPOINT try_it")
        assert _rows(postgres_dsn, table) == 1
        assert twin.pool_stats(pool).get("returns_bad", 0) == 0


def test_a_transaction_ended_inside_the_block_raises_lock_lost(
    twin: Twin, postgres_dsn: str, table: str
) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)
        with pytest.raises(LockLost, match="transaction ended inside the block"):
            with twin.hold(adv, ("movie", 8), timeout=5) as conn:
                twin.run(conn, "COMMIT")


def test_the_blocks_own_error_wins_over_a_lost_session(twin: Twin, postgres_dsn: str) -> None:
    with twin.pool(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = twin.lock(pool)

        def let_the_error_through() -> None:
            with twin.hold(adv, ("movie", 9), timeout=5) as conn:
                [(pid,)] = twin.run(conn, "SELECT pg_backend_pid()")
                _terminate(postgres_dsn, pid)
                twin.run(conn, "SELECT 1")  # raises, and the block lets it

        with pytest.raises(psycopg.OperationalError):
            let_the_error_through()


# --- contended_acquisitions never exceeds acquisitions (issue 13, low) -----------------------


def test_waiters_that_time_out_in_the_database_are_not_counted_as_contended(
    twin: Twin, postgres_dsn: str
) -> None:
    # Three threads ask for a key another session holds. The first waits in
    # the database; the other two queue in this process, are handed the key in
    # turn as the one before them gives up, and then time out in the database
    # too. None gets the advisory lock: no acquisition, contended or not (0.1
    # counted two contended acquisitions and no acquisition here).
    with twin.pool(postgres_dsn, min_size=1, max_size=3) as pool:
        adv = twin.lock(pool, namespace="contended")
        key = ("movie", 77)
        timeouts: list[LockTimeout] = []

        def ask(timeout: float) -> Callable[[], None]:
            def run() -> None:
                try:
                    with twin.hold(adv, key, timeout=timeout):
                        pass
                except LockTimeout as exc:
                    timeouts.append(exc)

            return run

        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (adv.advisory_key(key),))
            threads = _threads(1, ask(0.3))
            _eventually(lambda: adv.locked(key), "the first to wait in the database")
            threads += _threads(2, ask(1.5))
            _join(threads)
    assert len(timeouts) == 3
    stats = adv.stats()
    assert (stats.acquisitions, stats.contended_acquisitions, stats.timeouts) == (0, 0, 3)


PLAN = st.tuples(st.integers(0, 2), st.sampled_from([None, 0, 0.05]))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plans=st.lists(PLAN, min_size=1, max_size=8))
def test_counts_add_up_for_any_schedule(
    twin: Twin, postgres_dsn: str, plans: list[tuple[int, float | None]]
) -> None:
    # Key 2 is held by another session throughout, so every wait for it ends
    # in LockTimeout, after queueing in this process or not.
    outcomes: list[str] = []
    with twin.pool(postgres_dsn, min_size=1, max_size=3) as pool:
        adv = twin.lock(pool, namespace=f"schedule-{uuid.uuid4().hex[:8]}")

        def ask(key: int, timeout: float | None) -> None:
            if key == 2 and timeout is None:
                timeout = 0.05
            try:
                with twin.hold(adv, key, timeout=timeout) as conn:
                    twin.run(conn, "SELECT 1")
                outcomes.append("acquired")
            except LockTimeout:
                outcomes.append("timeout")

        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (adv.advisory_key(2),))
            threads = [threading.Thread(target=ask, args=plan, daemon=True) for plan in plans]
            for thread in threads:
                thread.start()
            _join(threads)
    stats = adv.stats()
    assert stats.acquisitions == outcomes.count("acquired")
    assert stats.timeouts == outcomes.count("timeout")
    assert stats.contended_acquisitions <= stats.acquisitions
    assert (stats.held_keys, stats.waiting_tasks) == (0, 0)


# --- twin-specific ------------------------------------------------------------------------


def test_the_sync_lock_refuses_an_async_pool_and_says_what_to_use() -> None:
    with pytest.raises(ConfigurationError, match="use AsyncPgAdvisoryLock for an async pool"):
        PgAdvisoryLock(async_pool_factory("postgresql://localhost/db"))  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_cancelling_a_database_wait_leaves_nothing_behind(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=2) as pool:
        adv = AsyncPgAdvisoryLock(pool, namespace="cancel-test")
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
async def test_dispatch_passes_the_connection_and_returns_the_result(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=2) as apool:
        adv = AsyncPgAdvisoryLock(apool)

        async def backend(conn: psycopg.AsyncConnection[Any], plus: int) -> int:
            cur = await conn.execute("SELECT 40")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0]) + plus

        assert await adv.dispatch("k", backend, 2) == 42
    with pool_factory(postgres_dsn, min_size=1, max_size=2) as pool:
        sync_adv = PgAdvisoryLock(pool)

        def sync_backend(conn: psycopg.Connection[Any], plus: int) -> int:
            row = conn.execute("SELECT 40").fetchone()
            assert row is not None
            return int(row[0]) + plus

        assert sync_adv.dispatch("k", sync_backend, 2) == 42
        with pytest.raises(ConfigurationError, match="fn must be a function, got str"):
            sync_adv.dispatch("k", "SELECT 1")  # type: ignore[arg-type]
        assert len(sync_adv) == 0


# --- many processes -----------------------------------------------------------------------


def _run_processes(
    dsn: str, table: str, modes: list[str], *, window: float
) -> list[dict[str, Any]]:
    """One process per mode x 25 tasks or threads, all creating the request for one movie."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(len(modes))
    inside = ctx.Barrier(len(modes))
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_lock_worker.main,
            args=(dsn, table, mode, start, inside, window, results),
        )
        for mode in modes
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
    reports = _run_processes(postgres_dsn, table, ["async"] * _lock_worker.PROCESSES, window=0.5)
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
    reports = _run_processes(postgres_dsn, table, ["local"] * _lock_worker.PROCESSES, window=60)
    assert all(r["met_others_inside"] is True for r in reports)
    assert _count_rows(postgres_dsn, table) == _lock_worker.PROCESSES
    assert sum(r["acquisitions"] for r in reports) == 100


@pytest.mark.slow
def test_a_sync_and_an_async_process_exclude_each_other(
    postgres_dsn: str, sync_table: Callable[[], str]
) -> None:
    # One process of PgAdvisoryLock threads, one of AsyncPgAdvisoryLock tasks:
    # the same key id, one lock in the database, exactly one row.
    table = sync_table()
    reports = _run_processes(postgres_dsn, table, ["sync", "async"], window=0.5)
    assert _count_rows(postgres_dsn, table) == 1
    assert sum(r["inserted"] for r in reports) == 1
    assert [r["met_others_inside"] for r in reports].count(True) == 0
    assert sum(r["acquisitions"] for r in reports) == 2 * _lock_worker.TASKS
