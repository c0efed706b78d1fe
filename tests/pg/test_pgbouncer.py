"""Pools behind a real PgBouncer (Debian's pgbouncer) in transaction pooling."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import psycopg.errors
import pytest

from seerrperf import (
    PoolConfigurationError,
    QueryTimeout,
    async_check_database_health,
    async_pool_factory,
    check_database_health,
    health_report,
    pool_factory,
)
from tests._support import PgBouncer, require_program

from .conftest import BOUNCER_USERS

ENFORCING_ROLE = BOUNCER_USERS[1]
MARGIN = 1.5  # seconds beyond a deadline: wake-ups on a loaded 2-core box
OURS_MS = 1234  # a statement_timeout no server has by default: a leak shows at once
PATIENT = 30.0  # checkout timeout where a test checks correctness, not speed


@pytest.fixture(scope="module")
def enforcing_role(postgres_dsn: str) -> str:
    """A role whose own settings make the server enforce 1 s / 60 s timeouts."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            f"DO $$ BEGIN CREATE ROLE {ENFORCING_ROLE} LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        conn.execute(f"ALTER ROLE {ENFORCING_ROLE} SET statement_timeout = '1s'")
        conn.execute(
            f"ALTER ROLE {ENFORCING_ROLE} SET idle_in_transaction_session_timeout = '1min'"
        )
    return ENFORCING_ROLE


def plain_clients_see(bouncer: PgBouncer, clients: int = 40) -> list[str]:
    """``SHOW statement_timeout`` as seen by unrelated clients of the same PgBouncer."""
    seen = []
    for _ in range(clients):
        with psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute("SHOW statement_timeout").fetchone()
            assert row is not None
            seen.append(str(row[0]))
    return seen


# --- correctness: prepared statements and session state -------------------------------------


@pytest.mark.anyio
async def test_async_parametrised_queries_through_transaction_pooling(
    pgbouncer: PgBouncer,
) -> None:
    pool = async_pool_factory(pgbouncer.dsn(), pgbouncer=True, timeout=PATIENT)
    assert pool.kwargs["prepare_threshold"] is None  # no server-side prepared statements
    errors: list[BaseException] = []

    async def task(i: int) -> None:
        try:
            async with pool.connection() as conn:
                for j in range(10):
                    cur = await conn.execute("SELECT %s::int * 10 + %s::int", (i, j))
                    assert await cur.fetchone() == (i * 10 + j,)
        except Exception as exc:
            errors.append(exc)

    async with pool:
        await asyncio.gather(*(task(i) for i in range(100)))
        stats = pool.stats()
    assert errors == []
    assert stats.requests_num == 100


def test_sync_parametrised_queries_through_transaction_pooling(pgbouncer: PgBouncer) -> None:
    pool = pool_factory(pgbouncer.dsn(), pgbouncer=True, timeout=PATIENT)

    def task(i: int) -> None:
        with pool.connection() as conn:
            for j in range(10):
                row = conn.execute("SELECT %s::int * 10 + %s::int", (i, j)).fetchone()
                assert row == (i * 10 + j,)

    with pool, ThreadPoolExecutor(max_workers=100) as executor:
        results = list(executor.map(task, range(100)))  # re-raises the first error
    assert len(results) == 100


def test_the_pool_leaves_no_session_setting_behind(pgbouncer: PgBouncer) -> None:
    before = set(plain_clients_see(pgbouncer))
    with pool_factory(
        pgbouncer.dsn(), pgbouncer=True, statement_timeout=OURS_MS / 1000, timeout=PATIENT
    ) as pool:

        def task(_: int) -> None:
            with pool.connection() as conn:
                conn.execute("SELECT 1")

        with ThreadPoolExecutor(max_workers=20) as executor:
            list(executor.map(task, range(200)))
    after = plain_clients_see(pgbouncer)
    assert f"{OURS_MS}ms" not in after
    assert set(after) == before == {"0"}  # the server's own default, for every client


def test_a_session_set_through_pgbouncer_does_leak(postgres_dsn: str) -> None:
    """What the pool avoids (seerrperf < 0.2 did this with pgbouncer=True)."""
    binary = require_program("pgbouncer", "pgbouncer")
    with PgBouncer(binary, postgres_dsn, pool_size=2) as bouncer:

        def leaky(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            conn.execute(f"SET statement_timeout = {OURS_MS}")
            conn.commit()

        with pool_factory(bouncer.dsn(), pgbouncer=True, configure=leaky, min_size=2) as pool:
            pool.wait()
        assert f"{OURS_MS}ms" in plain_clients_see(bouncer)


# --- timeouts: enforced by the server, or said so at open -----------------------------------


@pytest.mark.anyio
async def test_timeouts_the_server_enforces_cancel_every_long_statement(
    pgbouncer: PgBouncer, enforcing_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seerrperf.pool")
    async with async_pool_factory(
        pgbouncer.dsn(user=enforcing_role),
        pgbouncer=True,
        statement_timeout=1.0,
        timeout=PATIENT,
    ) as pool:
        await pool.wait()

        async def sleeper() -> BaseException | None:
            try:
                async with pool.connection() as conn:
                    await conn.execute("SELECT pg_sleep(1.5)")
            except psycopg.Error as exc:
                return exc
            return None

        outcomes = await asyncio.gather(*(sleeper() for _ in range(20)))
        stats = pool.stats()
        health = await async_check_database_health(pool, timeout=5.0)
    assert all(isinstance(o, psycopg.errors.QueryCanceled) for o in outcomes), outcomes
    assert stats.server_timeouts_enforced is True
    assert stats.statement_timeout_ms == 1000
    assert stats.idle_in_transaction_timeout_ms == 60000
    assert "cannot guarantee" not in caplog.text
    assert health.healthy
    assert health.warning is None
    assert health_report(health).body["status"] == "pass"


def test_timeouts_the_server_does_not_enforce_are_reported_once_at_open(
    pgbouncer: PgBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seerrperf.pool")
    with pool_factory(
        pgbouncer.dsn(), pgbouncer=True, statement_timeout=1.0, min_size=3, timeout=PATIENT
    ) as pool:
        pool.wait()  # three connections, each reads the server's settings
        warnings = [r for r in caplog.records if "cannot guarantee" in r.getMessage()]
        stats = pool.stats()

        def sleeper(_: int) -> bool:
            with pool.connection() as conn:
                conn.execute("SELECT pg_sleep(1.5)")
            return True

        with ThreadPoolExecutor(max_workers=20) as executor:
            completed = list(executor.map(sleeper, range(20)))
        health = check_database_health(pool, timeout=5.0)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "statement_timeout is 0 (off) on the server (the pool asks 1000 ms)" in message
    assert "ALTER ROLE postgres SET statement_timeout = 1000;" in message
    assert "connect_query" in message
    # Said at open, so the 20 statements that outlived the timeout are accounted for.
    assert completed == [True] * 20
    assert stats.server_timeouts_enforced is False
    assert stats.statement_timeout_ms == 0
    report = health_report(health)
    assert health.healthy
    assert report.status_code == 200
    assert report.body["status"] == "warn"
    entry = report.body["checks"]["postgres:statementTimeout"][0]
    assert entry["status"] == "warn"
    assert entry["observedValue"] == 0
    assert "ALTER ROLE" in entry["output"]


@pytest.mark.anyio
async def test_the_client_deadline_still_bounds_queries_behind_pgbouncer(
    pgbouncer: PgBouncer,
) -> None:
    async with async_pool_factory(
        pgbouncer.dsn(), pgbouncer=True, query_timeout=0.5, timeout=PATIENT
    ) as pool:
        t0 = time.monotonic()
        with pytest.raises(QueryTimeout):
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(3)")
        assert time.monotonic() - t0 < 0.5 + MARGIN
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)


# --- pgbouncer=False in front of PgBouncer -------------------------------------------------


def test_startup_options_refused_by_pgbouncer_name_the_cause_and_the_fix(
    pgbouncer: PgBouncer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="seerrperf.pool")
    with pool_factory(pgbouncer.dsn(), pgbouncer=False, timeout=2.0) as pool:
        t0 = time.monotonic()
        with pytest.raises(PoolConfigurationError) as info, pool.connection():
            pass
        elapsed = time.monotonic() - t0
        # Once known, the next checkout does not wait for its timeout to say it again.
        t1 = time.monotonic()
        with pytest.raises(PoolConfigurationError), pool.connection():
            pass
        again = time.monotonic() - t1
        health = check_database_health(pool, timeout=1.0)
        stats = pool.stats()
    message = str(info.value)
    assert "unsupported startup parameter: options" in message
    assert "pass pgbouncer=True" in message
    assert isinstance(info.value, psycopg.OperationalError)
    assert elapsed < 2.0 + MARGIN
    assert again < 2.0
    assert health.error is not None
    assert health.error == f"PoolConfigurationError: {message}"
    assert stats.configuration_error == message
    assert caplog.text.count(message) == 1  # logged once, at ERROR


@pytest.mark.anyio
async def test_async_startup_options_refused_by_pgbouncer_name_the_cause(
    pgbouncer: PgBouncer,
) -> None:
    async with async_pool_factory(pgbouncer.dsn(), timeout=2.0) as pool:
        t0 = time.monotonic()
        with pytest.raises(PoolConfigurationError, match="pass pgbouncer=True"):
            async with pool.connection():
                pass
        assert time.monotonic() - t0 < 2.0 + MARGIN
        health = await async_check_database_health(pool, timeout=1.0)
    assert health.error is not None
    assert "unsupported startup parameter: options" in health.error
