"""Health checks on a real server: up, stopped, frozen, and a black-hole endpoint."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from psycopg_pool import ConnectionPool

from seerrperf import (
    ConfigurationError,
    HealthResult,
    async_check_database_health,
    async_pool_factory,
    check_database_health,
    health_report,
    pool_factory,
)
from seerrperf.testing import EmbeddedPostgres, FakeClock
from tests._support import SENTINEL

MARGIN = 1.5  # seconds allowed beyond the timeout: thread wake-ups on a loaded 2-core box


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in accepted:
        conn.close()
    server.close()


def test_healthy_server_passes(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1) as pool:
        result = check_database_health(pool)
    assert result.healthy
    assert result.status == "pass"
    assert result.error is None
    assert 0 < result.latency_ms < 2000
    assert result.pool["pool_max"] == 20


@pytest.mark.anyio
async def test_async_healthy_server_passes(postgres_dsn: str) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1) as pool:
        result = await async_check_database_health(pool)
    assert result.healthy, result.error
    report = health_report(result, version="1.2.3")
    assert report.status_code == 200
    assert report.body["status"] == "pass"
    assert report.body["version"] == "1.2.3"
    check = report.body["checks"]["postgres:responseTime"][0]
    assert check["status"] == "pass"
    assert check["observedUnit"] == "ms"
    assert check["componentType"] == "datastore"
    assert "output" not in check


def test_stopped_server_fails_within_the_deadline(own_server: EmbeddedPostgres) -> None:
    with pool_factory(own_server.dsn, min_size=1) as pool:
        pool.wait()
        own_server.stop()
        try:
            t0 = time.monotonic()
            result = check_database_health(pool, timeout=1.0)
            elapsed = time.monotonic() - t0
        finally:
            own_server.start()
    assert not result.healthy
    assert result.status == "fail"
    assert result.error
    assert elapsed < 1.0 + MARGIN


@pytest.mark.anyio
async def test_frozen_server_fails_within_the_deadline_and_recovers(
    own_server: EmbeddedPostgres,
) -> None:
    async with async_pool_factory(own_server.dsn, min_size=1, max_size=2) as pool:
        await pool.wait()
        own_server.pause()
        try:
            t0 = time.monotonic()
            result = await async_check_database_health(pool, timeout=1.0)
            elapsed = time.monotonic() - t0
        finally:
            own_server.resume()
        assert not result.healthy
        assert result.error is not None
        assert "within 1 s" in result.error or "couldn't get a connection" in result.error
        assert elapsed < 1.0 + MARGIN
        # The connection whose socket was shut down is never handed out again.
        after = await async_check_database_health(pool, timeout=5.0)
        assert after.healthy, after.error


def test_sync_frozen_server_fails_within_the_deadline(own_server: EmbeddedPostgres) -> None:
    with pool_factory(own_server.dsn, min_size=1, max_size=1) as pool:
        pool.wait()
        own_server.pause()
        try:
            t0 = time.monotonic()
            result = check_database_health(pool, timeout=0.8)
            elapsed = time.monotonic() - t0
        finally:
            own_server.resume()
        assert not result.healthy
        assert result.error == "no answer from the database within 0.8 s"
        assert elapsed < 0.8 + MARGIN
        assert check_database_health(pool, timeout=5.0).healthy


@pytest.mark.anyio
async def test_endpoint_that_never_answers_fails_within_the_deadline(black_hole: int) -> None:
    dsn = f"postgresql://app:{SENTINEL}@127.0.0.1:{black_hole}/app"
    async with async_pool_factory(dsn, min_size=0, max_size=1) as pool:
        t0 = time.monotonic()
        result = await async_check_database_health(pool, timeout=1.0)
        elapsed = time.monotonic() - t0
    assert not result.healthy
    assert elapsed < 1.0 + MARGIN
    assert SENTINEL not in repr(result)


def test_report_for_a_failure_is_503_and_never_cached() -> None:
    failed = HealthResult(healthy=False, status="fail", latency_ms=2001.0, error="PoolTimeout: x")
    passed = HealthResult(healthy=True, status="pass", latency_ms=1.0, component="replica")
    report = health_report(passed, failed)
    assert report.status_code == 503
    assert report.headers == {
        "Content-Type": "application/health+json",
        "Cache-Control": "no-store",
    }
    body = json.loads(report.json())
    assert body["status"] == "fail"
    assert body["checks"]["postgres:responseTime"][0]["output"] == "PoolTimeout: x"
    assert body["checks"]["replica:responseTime"][0]["status"] == "pass"
    assert body["checks"]["postgres:responseTime"][0]["time"].endswith("Z")


def test_report_without_results_fails() -> None:
    report = health_report()
    assert report.status_code == 503
    assert report.body["status"] == "fail"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "2", True])
def test_bad_timeout_is_a_configuration_error(timeout: object, postgres_dsn: str) -> None:
    pool = pool_factory(postgres_dsn)
    with pytest.raises(ConfigurationError, match="timeout must be"):
        check_database_health(pool, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_pool_of_the_other_kind_is_a_configuration_error() -> None:
    # A programming error, raised at once: reporting it as an outage would
    # take the instance out of the load balancer with no hint why.
    sync_pool = pool_factory("postgresql://localhost/db")
    async_pool = async_pool_factory("postgresql://localhost/db")
    with pytest.raises(ConfigurationError) as info:
        check_database_health(async_pool)  # type: ignore[arg-type]
    assert str(info.value) == (
        "pool must be a psycopg_pool.ConnectionPool (an AsyncConnectionPool needs "
        "async_check_database_health), got AsyncTunedConnectionPool"
    )
    with pytest.raises(ConfigurationError) as info:
        await async_check_database_health(sync_pool)  # type: ignore[arg-type]
    assert str(info.value) == (
        "pool must be a psycopg_pool.AsyncConnectionPool (a ConnectionPool needs "
        "check_database_health), got TunedConnectionPool"
    )
    with pytest.raises(ConfigurationError, match="got str"):
        check_database_health("postgresql://localhost/db")  # type: ignore[arg-type]


def test_a_clock_that_cannot_be_called_is_a_configuration_error() -> None:
    pool = pool_factory("postgresql://localhost/db")
    with pytest.raises(ConfigurationError, match=r"clock must be a clock like time\.monotonic"):
        check_database_health(pool, clock=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_latency_is_measured_on_the_given_clock(postgres_dsn: str, asynchronous: bool) -> None:
    # Opening a connection during the checkout takes 0.25 s on the fake clock,
    # whatever it takes in real time.
    clock = FakeClock()

    def slow_connect(conn: object) -> None:
        clock.advance(0.25)

    async def aslow_connect(conn: object) -> None:
        clock.advance(0.25)

    async def run_async() -> HealthResult:
        async with async_pool_factory(postgres_dsn, min_size=0, configure=aslow_connect) as pool:
            return await async_check_database_health(pool, timeout=5.0, clock=clock)

    def run_sync() -> HealthResult:
        with pool_factory(postgres_dsn, min_size=0, configure=slow_connect) as pool:
            return check_database_health(pool, timeout=5.0, clock=clock)

    result = anyio.run(run_async) if asynchronous else run_sync()
    assert result.healthy, result.error
    assert result.latency_ms == 250.0


def test_closed_pool_is_reported_not_raised(postgres_dsn: str) -> None:
    pool = pool_factory(postgres_dsn)  # never opened
    result = check_database_health(pool, timeout=0.5)
    assert not result.healthy
    assert result.error is not None
    assert "PoolClosed" in result.error


def test_password_never_appears_in_results_reports_or_logs(
    black_hole: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for port in (1, black_hole):  # refused, and accepted but silent
        dsn = f"postgresql://app:{SENTINEL}@127.0.0.1:{port}/app"
        with pool_factory(dsn, min_size=0, max_size=1) as pool:
            result = check_database_health(pool, timeout=0.5)
        report = health_report(result)
        assert not result.healthy
        for text in (repr(result), str(result.as_dict()), report.json(), repr(report)):
            assert SENTINEL not in text
    assert SENTINEL not in caplog.text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seerrperf", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_exits_zero_and_prints_health_json(postgres_dsn: str) -> None:
    done = _cli("--dsn", postgres_dsn, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["status"] == "pass"
    assert "postgres:responseTime" in body["checks"]


def test_cli_exits_one_when_the_database_is_down() -> None:
    done = _cli("--dsn", f"postgresql://app:{SENTINEL}@127.0.0.1:1/app", "--timeout", "0.5")
    assert done.returncode == 1
    assert json.loads(done.stdout)["status"] == "fail"
    assert SENTINEL not in done.stdout + done.stderr


def test_cli_reports_configuration_errors_with_exit_two() -> None:
    done = _cli("--dsn", f"{SENTINEL} host=x")
    assert done.returncode == 2
    assert "not a valid PostgreSQL DSN" in done.stderr
    assert SENTINEL not in done.stdout + done.stderr


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_deadline_also_bounds_the_checkout_liveness_check(
    own_server: EmbeddedPostgres, asynchronous: bool
) -> None:
    """An idle connection is verified inside getconn(): a frozen server must not hang that."""
    clock = FakeClock()

    async def run_async() -> tuple[HealthResult, float]:
        async with async_pool_factory(own_server.dsn, min_size=1, max_size=1, clock=clock) as pool:
            await pool.wait()
            clock.advance(5)  # idle past check_idle: the next checkout runs the liveness check
            own_server.pause()
            try:
                t0 = time.monotonic()
                result = await async_check_database_health(pool, timeout=1.0)
                return result, time.monotonic() - t0
            finally:
                own_server.resume()

    def run_sync() -> tuple[HealthResult, float]:
        with pool_factory(own_server.dsn, min_size=1, max_size=1, clock=clock) as pool:
            pool.wait()
            clock.advance(5)
            own_server.pause()
            try:
                t0 = time.monotonic()
                result = check_database_health(pool, timeout=1.0)
                return result, time.monotonic() - t0
            finally:
                own_server.resume()

    result, elapsed = anyio.run(run_async) if asynchronous else run_sync()
    assert not result.healthy
    assert elapsed < 1.0 + MARGIN


@pytest.mark.anyio
async def test_a_cancelled_check_leaves_no_watchdog_behind(own_server: EmbeddedPostgres) -> None:
    async with async_pool_factory(own_server.dsn, min_size=1, max_size=1) as pool:
        await pool.wait()
        threads_before = threading.active_count()
        own_server.pause()
        try:
            with anyio.move_on_after(0.2) as scope:
                await async_check_database_health(pool, timeout=1.0)
            assert scope.cancelled_caught
        finally:
            own_server.resume()
        assert threading.active_count() == threads_before  # the timer was disarmed
        # The deadline of the cancelled check (1 s) passes during this query:
        # nothing may shut its connection down.
        async with pool.connection(timeout=5) as conn:
            await conn.execute("SELECT pg_sleep(1.2)")


@pytest.mark.parametrize("latency", [float("nan"), float("inf"), float("-inf")])
def test_the_report_is_valid_json_whatever_the_latency(latency: float) -> None:
    result = HealthResult(healthy=True, status="pass", latency_ms=latency)
    report = health_report(result)
    body = json.loads(report.json())  # json.loads accepts NaN: check the text too
    assert "NaN" not in report.json()
    assert "Infinity" not in report.json()
    assert body["checks"]["postgres:responseTime"][0]["observedValue"] is None
    assert result.as_dict()["latency_ms"] is None
    assert "NaN" not in json.dumps(result.as_dict(), default=str)


def test_a_clock_returning_nan_is_a_configuration_error() -> None:
    pool = pool_factory("postgresql://localhost/db")
    with pytest.raises(ConfigurationError, match="clock must return a finite number"):
        check_database_health(pool, clock=lambda: float("nan"))


def test_the_report_says_what_statement_timeout_the_server_applies(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, statement_timeout=12) as pool:
        result = check_database_health(pool)
    assert result.statement_timeout_ms == 12_000
    assert result.warning is None
    entry = health_report(result).body["checks"]["postgres:statementTimeout"][0]
    assert (entry["observedValue"], entry["observedUnit"], entry["status"]) == (
        12_000,
        "ms",
        "pass",
    )


def test_a_plain_psycopg_pool_reports_no_server_settings(postgres_dsn: str) -> None:
    with ConnectionPool(postgres_dsn, min_size=1, open=False) as pool:
        result = check_database_health(pool)
    assert result.healthy, result.error
    assert result.statement_timeout_ms is None
    assert "postgres:statementTimeout" not in health_report(result).body["checks"]


def test_the_pool_figures_in_a_failed_check_are_true(own_server: EmbeddedPostgres) -> None:
    with pool_factory(own_server.dsn, min_size=2, max_size=4, check_idle=0) as pool:
        pool.wait()
        own_server.stop()
        try:
            result = check_database_health(pool, timeout=0.5)
        finally:
            own_server.start()
    assert not result.healthy
    assert result.pool["pool_size"] == 0  # no live backend, whatever is being retried
    assert result.pool["requests_waiting"] == 0
