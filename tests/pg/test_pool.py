"""pool_factory / async_pool_factory: validation without a server, behaviour with one."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import psycopg
import psycopg.errors
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from seerrperf import (
    AsyncTunedConnectionPool,
    ConfigurationError,
    PoolSettings,
    async_pool_factory,
    collect_stats,
    pool_factory,
)
from seerrperf.testing import EmbeddedPostgres, FakeClock
from tests._support import SENTINEL

# --- settings and validation (no server) -------------------------------------------------


def test_defaults_match_the_documented_values() -> None:
    s = PoolSettings()
    assert (s.max_size, s.min_size, s.max_idle, s.timeout) == (20, 2, 30.0, 2.0)
    assert (s.connect_timeout, s.statement_timeout, s.keepalives_idle) == (2, 30.0, 10)
    assert s.check is True
    assert s.check_idle == 1.0
    assert s.session_parameters() == {
        "statement_timeout": "30000",
        "idle_in_transaction_session_timeout": "60000",
    }


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"min_size": 5, "max_size": 2}, "min_size (5) must not exceed max_size (2)"),
        ({"max_size": 0}, "max_size must be >= 1"),
        ({"min_size": -1}, "min_size must be >= 0"),
        ({"max_size": 2.5}, "max_size must be an integer"),
        ({"max_size": True}, "max_size must be an integer"),
        ({"timeout": 0}, "timeout must be finite and > 0"),
        ({"timeout": -1.0}, "timeout must be finite and > 0"),
        ({"timeout": float("inf")}, "timeout must be finite"),
        ({"timeout": "2"}, "timeout must be a number of seconds"),
        ({"statement_timeout": 0}, "statement_timeout must be finite and > 0"),
        ({"check_idle": -0.5}, "check_idle must be finite and >= 0"),
        ({"connect_timeout": 1}, "connect_timeout must be >= 2"),
        ({"max_idle": float("nan")}, "max_idle must be finite"),
        ({"check": "yes"}, "check must be True or False"),
        ({"application_name": "x" * 64}, "application_name must be at most 63 bytes"),
        ({"application_name": "bad\nname"}, "application_name must be a non-empty printable"),
        ({"application_name": ""}, "application_name must be a non-empty printable"),
        ({"pgbouncer": 1}, "pgbouncer must be True or False"),
        # PostgreSQL refuses timeouts of INT_MAX milliseconds (24.8 days) or more:
        # accepted here, such a pool could never open a connection.
        ({"statement_timeout": 25 * 86_400}, "statement_timeout must be at most 2147483 seconds"),
        (
            {"idle_in_transaction_timeout": 2_147_484},
            "idle_in_transaction_timeout must be at most 2147483 seconds",
        ),
        ({"keepalives_idle": 40_000}, "keepalives_idle must be at most 32767 seconds"),
        ({"max_size": 300_000}, "max_size must be <= 262143"),
        ({"query_timeout": 0}, "query_timeout must be finite and > 0"),
        ({"query_timeout": "soon"}, "query_timeout must be a number of seconds or None"),
        ({"grow_after": -1}, "grow_after must be finite and >= 0"),
        ({"prepare_threshold": -1}, "prepare_threshold must be >= 0"),
        ({"prepare_threshold": 2.5}, "prepare_threshold must be an integer"),
    ],
)
def test_bad_settings_name_the_problem(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        pool_factory("postgresql://localhost/db", **overrides)
    assert fragment in str(info.value)


HUGE = 10**400  # float() of it overflows


@pytest.mark.parametrize(
    "field",
    [
        "max_idle",
        "timeout",
        "connect_timeout",
        "statement_timeout",
        "idle_in_transaction_timeout",
        "query_timeout",
        "keepalives_idle",
        "max_lifetime",
        "check_idle",
        "grow_after",
        "min_size",
        "max_size",
    ],
)
def test_huge_integers_are_configuration_errors_naming_the_field(field: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{field} must be"):
        PoolSettings(**{field: HUGE})


def test_the_largest_timeouts_postgresql_accepts_are_accepted() -> None:
    s = PoolSettings(statement_timeout=2_147_483, idle_in_transaction_timeout=2_147_483)
    assert s.session_parameters() == {
        "statement_timeout": "2147483000",
        "idle_in_transaction_session_timeout": "2147483000",
    }


def test_query_timeout_follows_statement_timeout_unless_set() -> None:
    assert PoolSettings().effective_query_timeout() == 35.0  # the server's 30 s fires first
    assert PoolSettings(statement_timeout=120).effective_query_timeout() == 125.0
    assert PoolSettings(statement_timeout=None).effective_query_timeout() is None
    assert PoolSettings(query_timeout=3).effective_query_timeout() == 3.0
    assert PoolSettings(query_timeout=None).effective_query_timeout() is None


def test_prepared_statements_are_off_behind_pgbouncer_unless_asked_for() -> None:
    dsn = "postgresql://app@db/app"
    assert "prepare_threshold" not in pool_factory(dsn).kwargs  # psycopg's default (5)
    assert pool_factory(dsn, pgbouncer=True).kwargs["prepare_threshold"] is None
    # PgBouncer >= 1.21 with max_prepared_statements tracks protocol-level statements.
    opted_in = pool_factory(dsn, pgbouncer=True, prepare_threshold=2).kwargs
    assert opted_in["prepare_threshold"] == 2
    assert pool_factory(dsn, prepare_threshold=None).kwargs["prepare_threshold"] is None


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"settings": {"max_size": 5}}, "settings must be a PoolSettings, got dict"),
        ({"kwargs": [("sslmode", "require")]}, "kwargs must be a mapping"),
        ({"name": ""}, "name must be a non-empty printable string"),
        ({"clock": 1000.0}, "clock must be a clock like time.monotonic, got float"),
        ({"configure": "SET search_path = media"}, "configure must be a function"),
        ({"reset": True}, "reset must be a function"),
    ],
)
@pytest.mark.parametrize("factory", [pool_factory, async_pool_factory])
def test_bad_factory_arguments_are_refused_when_given(
    factory: Any, arguments: dict[str, Any], fragment: str
) -> None:
    # Not later, in a worker thread where a bad callback would only be logged.
    with pytest.raises(ConfigurationError, match=fragment):
        factory("postgresql://localhost/db", **arguments)


def test_a_dsn_that_is_no_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="dsn must be a string, got bytes"):
        pool_factory(b"postgresql://localhost/db")  # type: ignore[arg-type]


def test_unknown_override_lists_valid_names() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown pool setting\(s\): max_sise"):
        async_pool_factory("postgresql://localhost/db", max_sise=5)


def test_none_disables_server_timeouts() -> None:
    s = PoolSettings(statement_timeout=None, idle_in_transaction_timeout=None)
    assert s.session_parameters() == {}


def test_no_dsn_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="no database DSN"):
        pool_factory()
    with pytest.raises(ConfigurationError, match="no database DSN"):
        pool_factory("   ")


def test_dsn_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example/app")
    pool = pool_factory()
    assert pool.conninfo == "postgresql://app@db.example/app"


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=db password={SENTINEL} oops",
        f"{SENTINEL} host=db",
        f"postgresql://u:{SENTINEL}@db/app?bogus_option=1",
    ],
)
def test_unparsable_dsn_never_shows_the_password(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError, match="not a valid PostgreSQL DSN") as info:
        pool_factory(dsn)
    assert SENTINEL not in str(info.value)
    assert SENTINEL not in repr(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert SENTINEL not in caplog.text


# The connection parameters a pool hands to psycopg.connect are its public ``kwargs``.


def test_libpq_parameters_reach_the_connection_string() -> None:
    params = pool_factory("postgresql://app@db/app").kwargs
    assert params["connect_timeout"] == 2
    assert params["keepalives"] == 1
    assert params["keepalives_idle"] == 10
    assert params["keepalives_interval"] == 5
    assert params["keepalives_count"] == 3
    assert params["application_name"] == "seerrperf"
    assert params["options"] == (
        "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
    )


def test_dsn_parameters_win_over_defaults_but_not_over_explicit_overrides() -> None:
    dsn = "postgresql://app@db/app?application_name=from-dsn&options=-c%20statement_timeout%3D5000"
    params = async_pool_factory(dsn).kwargs
    assert "application_name" not in params  # the DSN's value stays
    # PostgreSQL applies -c options left to right: the DSN's comes last and wins.
    assert params["options"].endswith("-c statement_timeout=5000")

    params = async_pool_factory(dsn, application_name="explicit", statement_timeout=7).kwargs
    assert params["application_name"] == "explicit"
    options = params["options"]
    assert options.index("statement_timeout=7000") > options.index("statement_timeout=5000")

    # Settings differing from the defaults count as explicit too.
    params = pool_factory(dsn, settings=PoolSettings(application_name="from-settings")).kwargs
    assert params["application_name"] == "from-settings"


def test_user_kwargs_win_and_options_compose() -> None:
    params = pool_factory(
        "postgresql://app@db/app",
        kwargs={"options": "-c search_path=media", "connect_timeout": 9},
    ).kwargs
    assert params["connect_timeout"] == 9
    assert params["options"].endswith("-c search_path=media")
    assert "statement_timeout=30000" in params["options"]


def test_pgbouncer_mode_sends_no_startup_options() -> None:
    # Nor any SET: see tests/pg/test_pgbouncer.py for what it does instead.
    assert "options" not in pool_factory("postgresql://app@db/app", pgbouncer=True).kwargs


def test_pool_is_returned_unopened_with_our_sizes() -> None:
    pool = async_pool_factory("postgresql://app@db/app", max_size=7, min_size=1, name="media")
    assert isinstance(pool, AsyncConnectionPool)
    assert isinstance(pool, AsyncTunedConnectionPool)
    assert (pool.min_size, pool.max_size, pool.timeout, pool.name) == (1, 7, 2.0, "media")
    assert pool.closed


# --- against a real server ------------------------------------------------------------------


def test_settings_reach_the_server(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1) as pool, pool.connection() as conn:
        show = conn.execute("SHOW statement_timeout").fetchone()
        idle = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        app = conn.execute("SELECT current_setting('application_name')").fetchone()
    assert show == ("30s",)
    assert idle == ("1min",)
    assert app == ("seerrperf",)


def test_lowered_statement_timeout_cancels_long_queries(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, statement_timeout=0.1) as pool:
        with pool.connection() as conn, pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(2)")
        # The pool still works after a cancelled statement.
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_pgbouncer_mode_sets_nothing_and_reads_what_the_server_enforces(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seerrperf.pool")
    with (
        pool_factory(postgres_dsn, min_size=1, pgbouncer=True, statement_timeout=4) as pool,
        pool.connection() as conn,
    ):
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)  # the server's own
        stats = pool.stats()
    assert stats.statement_timeout_ms == 0
    assert stats.server_timeouts_enforced is False
    assert "cannot guarantee its timeouts" in caplog.text


@pytest.mark.anyio
async def test_user_configure_composes_with_ours(postgres_dsn: str) -> None:
    seen: list[str] = []

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SET search_path = pg_catalog")
        await conn.commit()
        seen.append("configured")

    async with async_pool_factory(postgres_dsn, min_size=1, configure=configure) as pool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT current_setting('search_path'), 1")
            assert await cur.fetchone() == ("pg_catalog", 1)
            cur = await conn.execute("SHOW statement_timeout")
            assert await cur.fetchone() == ("30s",)
    assert seen


@pytest.mark.anyio
async def test_server_never_sees_more_than_max_size(postgres_dsn: str, app_name: str) -> None:
    peak = 0
    done = anyio.Event()
    watching = anyio.Event()

    async with async_pool_factory(
        postgres_dsn, min_size=0, max_size=5, timeout=30, application_name=app_name
    ) as pool:

        async def worker() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.01)")

        async def monitor() -> None:
            nonlocal peak
            # autocommit: inside one transaction pg_stat_activity is a frozen snapshot
            async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as mon:
                while not done.is_set():
                    cur = await mon.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (app_name,),
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    peak = max(peak, row[0])
                    watching.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor)
            with anyio.fail_after(30):
                await watching.wait()  # sample from the first worker on
            async with anyio.create_task_group() as workers:
                for _ in range(100):
                    workers.start_soon(worker)
            # Connections stay open (max_idle 30 s): one more sample sees them all.
            await anyio.wait_all_tasks_blocked()
            done.set()
        stats = pool.get_stats()
    assert 1 <= peak <= 5
    assert stats["requests_num"] == 100
    assert stats.get("connections_num", 0) <= 5


@pytest.mark.anyio
async def test_checkout_times_out_when_every_connection_is_held(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=1, timeout=0.3) as pool:
        async with pool.connection():
            t0 = time.monotonic()
            with pytest.raises(PoolTimeout):
                async with pool.connection():
                    pass
            waited = time.monotonic() - t0
    assert 0.25 <= waited < 0.3 + 1.0


def test_restart_with_check_idle_zero_works_at_once(own_server: EmbeddedPostgres) -> None:
    with pool_factory(own_server.dsn, min_size=2, check_idle=0) as pool:
        pool.wait()
        own_server.restart()
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restart_is_survived_once_check_idle_has_passed(own_server: EmbeddedPostgres) -> None:
    clock = FakeClock()
    with pool_factory(own_server.dsn, min_size=2, max_size=2, clock=clock) as pool:
        pool.wait()
        own_server.restart()
        clock.advance(1.5)  # longer than check_idle=1.0: every idle connection is verified
        for _ in range(4):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.get_stats().get("connections_lost", 0) >= 1


def test_recently_used_connections_skip_the_check(own_server: EmbeddedPostgres) -> None:
    """The trade-off check_idle makes: a busy pool pays no round trip per checkout.

    A connection checked out less than check_idle ago is handed out without a
    check, so after a restart its first query fails; past check_idle, the
    check replaces a dead connection silently.
    """
    clock = FakeClock()
    with pool_factory(own_server.dsn, min_size=1, max_size=1, clock=clock) as pool:
        pool.wait()
        for _ in range(5):  # 2.4 s in all, but never 1 s between two checkouts
            clock.advance(0.6)
            with pool.connection() as conn:
                conn.execute("SELECT 1")
        own_server.restart()
        with pytest.raises(psycopg.OperationalError), pool.connection() as conn:
            conn.execute("SELECT 1")  # the dead connection was not verified
        pool.wait()  # the pool replaces the broken connection
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        own_server.restart()
        clock.advance(1.0)  # exactly check_idle: verified, replaced, no error
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_password_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://app:{SENTINEL}@127.0.0.1:1/app"
    with pool_factory(dsn, min_size=0, max_size=1, timeout=0.5) as pool:
        with pytest.raises(PoolTimeout) as info, pool.connection():
            pass
        assert SENTINEL not in str(info.value)
        assert SENTINEL not in repr(pool.get_stats())
    assert SENTINEL not in caplog.text


# --- statistics that stay true during an outage ---------------------------------------------


def test_an_outage_shows_no_live_connection_and_only_real_waiters(
    own_server: EmbeddedPostgres,
) -> None:
    with pool_factory(own_server.dsn, min_size=2, max_size=4, check_idle=0, timeout=0.2) as pool:
        pool.wait()
        own_server.stop()
        try:
            callers, attempts = 3, 4
            for _ in range(attempts):
                for _ in range(callers):
                    with pytest.raises(PoolTimeout), pool.connection():
                        pass
            stats = pool.stats()
            raw = pool.get_stats()
            # psycopg_pool's own figures (what a plain pool reports) count the
            # reconnection attempts as connections, and callers that gave up.
            psycopg_figures = ConnectionPool.get_stats(pool)
        finally:
            own_server.start()
    assert stats.pool_size == raw["pool_size"] == 0
    assert stats.connections_pending == raw["connections_pending"] == 2
    assert stats.requests_waiting == raw["requests_waiting"] == 0
    assert psycopg_figures["pool_size"] == 2
    assert psycopg_figures["requests_waiting"] >= callers * attempts - 2


@pytest.mark.anyio
async def test_requests_waiting_counts_the_callers_waiting_now(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=1, timeout=10) as pool:
        async with pool.connection():
            waiters = [asyncio.ensure_future(_checkout(pool)) for _ in range(3)]
            await anyio.wait_all_tasks_blocked()  # all three wait inside getconn()
            snapshot = collect_stats(pool=pool)["pool"]
        await asyncio.gather(*waiters)
        after = pool.stats()
    assert snapshot["requests_waiting"] == 3
    assert snapshot["in_use"] == 1
    assert {"pool_limit", "connections_pending", "query_timeouts"} <= set(snapshot)
    assert after.requests_waiting == 0
    assert after.in_use == 0


async def _checkout(pool: AsyncConnectionPool[Any]) -> None:
    async with pool.connection():
        pass


# --- growth --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_caller_holding_one_connection_gets_a_second(postgres_dsn: str) -> None:
    # The pool has one connection and may grow to two: the holder of the first
    # asking for a second would wait forever if growth waited for a return.
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=2, timeout=10) as pool:
        await pool.wait()
        async with pool.connection() as first, pool.connection() as second:
            assert first is not second
        stats = pool.stats()
    assert stats.grows == 1
    assert stats.pool_limit == 2


def test_slow_holders_make_the_pool_grow_one_at_a_time(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, max_size=4, timeout=30) as pool:
        pool.wait()

        def slow(_: int) -> None:
            with pool.connection() as conn:
                conn.execute("SELECT pg_sleep(0.3)")

        with ThreadPoolExecutor(max_workers=8) as executor:
            list(executor.map(slow, range(8)))
        stats = pool.stats()
    assert stats.grows == 3  # to max_size, one connection per decision
    assert stats.pool_limit == stats.pool_max == 4
    assert stats.connections_num == 4


@pytest.mark.anyio
async def test_grow_after_zero_grows_as_psycopg_pool_does(postgres_dsn: str, app_name: str) -> None:
    async with async_pool_factory(
        postgres_dsn, min_size=1, max_size=4, grow_after=0, timeout=30
    ) as pool:
        assert pool.stats().pool_limit == 4

        async def slow() -> None:
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.3)")

        await asyncio.gather(*(slow() for _ in range(8)))
        stats = pool.stats()
    assert stats.grows == 0  # no rule: psycopg_pool opened them when requests queued
    assert stats.connections_num > 1


def test_resize_moves_the_bounds_of_the_rule(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, max_size=2) as pool:
        pool.resize(3, 6)
        stats = pool.stats()
        assert (pool.min_size, pool.max_size) == (3, 6)
    assert (stats.pool_min, stats.pool_max, stats.pool_limit) == (3, 6, 3)
