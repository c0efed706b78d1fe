"""pool_factory / async_pool_factory: validation without a server, behaviour with one."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import psycopg
import psycopg.errors
import pytest
from psycopg_pool import AsyncConnectionPool, PoolTimeout

import seerrperf._pg.pool as pool_module
from seerrperf import ConfigurationError, PoolSettings, async_pool_factory, pool_factory
from seerrperf._pg.pool import _PoolPlan
from seerrperf.testing import EmbeddedPostgres
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
        ({"application_name": "bad\nname"}, "application_name must be a printable string"),
    ],
)
def test_bad_settings_name_the_problem(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        pool_factory("postgresql://localhost/db", **overrides)
    assert fragment in str(info.value)


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


def test_libpq_parameters_reach_the_connection_string() -> None:
    plan = _PoolPlan.build("postgresql://app@db/app", None, {}, None)
    assert plan.kwargs["connect_timeout"] == 2
    assert plan.kwargs["keepalives"] == 1
    assert plan.kwargs["keepalives_idle"] == 10
    assert plan.kwargs["application_name"] == "seerrperf"
    assert plan.kwargs["options"] == (
        "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
    )


def test_dsn_parameters_win_over_defaults_but_not_over_explicit_overrides() -> None:
    dsn = "postgresql://app@db/app?application_name=from-dsn&options=-c%20statement_timeout%3D5000"
    plan = _PoolPlan.build(dsn, None, {}, None)
    assert "application_name" not in plan.kwargs  # the DSN's value stays
    # PostgreSQL applies -c options left to right: the DSN's comes last and wins.
    assert plan.kwargs["options"].endswith("-c statement_timeout=5000")

    plan = _PoolPlan.build(
        dsn, None, {"application_name": "explicit", "statement_timeout": 7}, None
    )
    assert plan.kwargs["application_name"] == "explicit"
    options = plan.kwargs["options"]
    assert options.index("statement_timeout=7000") > options.index("statement_timeout=5000")


def test_user_kwargs_win_and_options_compose() -> None:
    plan = _PoolPlan.build(
        "postgresql://app@db/app",
        None,
        {},
        {"options": "-c search_path=media", "connect_timeout": 9},
    )
    assert plan.kwargs["connect_timeout"] == 9
    assert plan.kwargs["options"].endswith("-c search_path=media")
    assert "statement_timeout=30000" in plan.kwargs["options"]


def test_pgbouncer_mode_sends_no_startup_options() -> None:
    plan = _PoolPlan.build("postgresql://app@db/app", None, {"pgbouncer": True}, None)
    assert "options" not in plan.kwargs
    assert plan.set_statement == (
        "SET statement_timeout = 30000; SET idle_in_transaction_session_timeout = 60000"
    )


def test_pool_is_returned_unopened_with_our_sizes() -> None:
    pool = async_pool_factory("postgresql://app@db/app", max_size=7, min_size=1, name="media")
    assert isinstance(pool, AsyncConnectionPool)
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


def test_pgbouncer_mode_applies_timeouts_with_set(postgres_dsn: str) -> None:
    with (
        pool_factory(postgres_dsn, min_size=1, pgbouncer=True, statement_timeout=4) as pool,
        pool.connection() as conn,
    ):
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4s",)


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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(pool_module, "_clock", clock)
    return clock


def test_restart_with_check_idle_zero_works_at_once(own_server: EmbeddedPostgres) -> None:
    with pool_factory(own_server.dsn, min_size=2, check_idle=0) as pool:
        pool.wait()
        own_server.restart()
        for _ in range(3):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_restart_is_survived_once_check_idle_has_passed(
    own_server: EmbeddedPostgres, fake_clock: FakeClock
) -> None:
    with pool_factory(own_server.dsn, min_size=2, max_size=2) as pool:
        pool.wait()
        own_server.restart()
        fake_clock.now += 1.5  # longer than check_idle=1.0: every idle connection is verified
        for _ in range(4):
            with pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.get_stats().get("connections_lost", 0) >= 1


def test_recently_used_connections_skip_the_check(
    own_server: EmbeddedPostgres, fake_clock: FakeClock
) -> None:
    """The trade-off check_idle makes: a busy pool pays no round trip per checkout."""
    checks: list[int] = []
    original = pool_module.ConnectionPool.check_connection

    def counting(conn: psycopg.Connection[Any]) -> None:
        checks.append(1)
        original(conn)

    with pool_factory(own_server.dsn, min_size=1, max_size=1) as pool:
        pool.wait()
        pool_module.ConnectionPool.check_connection = staticmethod(counting)  # type: ignore[method-assign]
        try:
            for _ in range(5):
                with pool.connection() as conn:
                    conn.execute("SELECT 1")
            assert checks == []
            fake_clock.now += 2
            with pool.connection() as conn:
                conn.execute("SELECT 1")
            assert checks == [1]
        finally:
            pool_module.ConnectionPool.check_connection = original  # type: ignore[method-assign]


def test_password_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dsn = f"postgresql://app:{SENTINEL}@127.0.0.1:1/app"
    with pool_factory(dsn, min_size=0, max_size=1, timeout=0.5) as pool:
        with pytest.raises(PoolTimeout) as info, pool.connection():
            pass
        assert SENTINEL not in str(info.value)
        assert SENTINEL not in repr(pool.get_stats())
    assert SENTINEL not in caplog.text
