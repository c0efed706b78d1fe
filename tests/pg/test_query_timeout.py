"""The client-side query deadline and prompt cancellation, against a frozen real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import psycopg.errors
import pytest

from seerrperf import QueryTimeout, async_pool_factory, pool_factory
from seerrperf._pg.connection import CANCEL_GRACE
from seerrperf.testing import EmbeddedPostgres, FakeClock

MARGIN = 1.5  # seconds allowed beyond a deadline: thread and loop wake-ups on a loaded box
RECOVERY = 30.0  # reconnection backs off while the server is frozen: generous, but finite


def test_a_frozen_server_frees_the_caller_within_query_timeout(
    own_server: EmbeddedPostgres,
) -> None:
    # A fake clock that never moves: no checkout runs the liveness check, so
    # the query itself meets the frozen server.
    with pool_factory(
        own_server.dsn, min_size=1, max_size=2, query_timeout=0.5, clock=FakeClock()
    ) as pool:
        pool.wait()
        own_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(QueryTimeout, match=r"within 0\.5 s \(query_timeout\)") as info:
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
            elapsed = time.monotonic() - t0
        finally:
            own_server.resume()
        assert elapsed < 0.5 + MARGIN
        assert isinstance(info.value, psycopg.OperationalError)  # existing handlers catch it
        assert isinstance(info.value, TimeoutError)
        assert conn.closed  # never handed out again
        stats = pool.stats()
        assert stats.query_timeouts == 1
        assert stats.returns_bad == 1
        with pool.connection(timeout=RECOVERY) as again:
            assert again is not conn
            assert again.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.anyio
async def test_async_a_frozen_server_frees_the_caller_within_query_timeout(
    own_server: EmbeddedPostgres,
) -> None:
    async with async_pool_factory(
        own_server.dsn, min_size=1, max_size=2, query_timeout=0.5, clock=FakeClock()
    ) as pool:
        await pool.wait()
        own_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(QueryTimeout):
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            elapsed = time.monotonic() - t0
        finally:
            own_server.resume()
        assert elapsed < 0.5 + MARGIN
        assert conn.closed
        assert pool.stats().query_timeouts == 1
        async with pool.connection(timeout=RECOVERY) as again:
            assert again is not conn
            assert await (await again.execute("SELECT 1")).fetchone() == (1,)


@pytest.mark.anyio
async def test_cancelling_a_query_on_a_frozen_server_is_prompt(
    own_server: EmbeddedPostgres,
) -> None:
    # psycopg alone asks the server to cancel and waits for it: over 8 s here.
    async with async_pool_factory(own_server.dsn, min_size=1, max_size=2) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            own_server.pause()
            try:
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await conn.execute("SELECT 1")
                elapsed = time.monotonic() - t0
            finally:
                own_server.resume()
            assert conn.closed  # the server could not confirm: the connection is dropped
        assert elapsed < 0.5 + CANCEL_GRACE + MARGIN
        async with pool.connection(timeout=RECOVERY) as again:
            assert await (await again.execute("SELECT 1")).fetchone() == (1,)


@pytest.mark.anyio
async def test_cancelling_on_a_healthy_server_keeps_the_connection(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=1) as pool:
        async with pool.connection() as conn:
            before = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await conn.execute("SELECT pg_sleep(30)")
            assert not conn.closed  # the server confirmed the cancel in time
        async with pool.connection() as conn:
            after = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert after == before
        assert pool.stats().returns_bad == 0


def test_the_servers_statement_timeout_fires_before_the_client_deadline(
    postgres_dsn: str,
) -> None:
    # "auto": query_timeout is statement_timeout + 5 s, so the server speaks first
    # and the connection stays usable.
    with pool_factory(postgres_dsn, min_size=1, max_size=1, statement_timeout=0.2) as pool:
        with pool.connection() as conn, pytest.raises(psycopg.errors.QueryCanceled) as info:
            conn.execute("SELECT pg_sleep(2)")
        assert not isinstance(info.value, QueryTimeout)
        assert pool.stats().query_timeouts == 0
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_waiting_for_notifications_is_not_a_query(postgres_dsn: str) -> None:
    # An idle connection in notifies() waits for the server legitimately.
    kwargs: dict[str, Any] = {"autocommit": True}
    with pool_factory(
        postgres_dsn, min_size=1, max_size=1, query_timeout=0.2, kwargs=kwargs
    ) as pool:
        with pool.connection() as conn:
            conn.execute("LISTEN seerrperf_query_timeout_test")
            t0 = time.monotonic()
            assert list(conn.notifies(timeout=0.6)) == []
            assert time.monotonic() - t0 >= 0.5
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.stats().query_timeouts == 0


@pytest.mark.parametrize(("query_timeout", "times_out"), [(0.3, True), (None, False)])
def test_query_timeout_bounds_a_slow_answer_and_none_disables_it(
    postgres_dsn: str, query_timeout: float | None, times_out: bool
) -> None:
    # The server would answer after 0.6 s (no statement_timeout): a deadline
    # of 0.3 s gives up first, no deadline waits for the answer.
    with pool_factory(
        postgres_dsn,
        min_size=1,
        max_size=1,
        statement_timeout=None,
        query_timeout=query_timeout,
    ) as pool:
        with pool.connection() as conn:
            if times_out:
                with pytest.raises(QueryTimeout):
                    conn.execute("SELECT pg_sleep(0.6)")
            else:
                conn.execute("SELECT pg_sleep(0.6)")
        assert pool.stats().query_timeouts == int(times_out)
        with pool.connection(timeout=RECOVERY) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
