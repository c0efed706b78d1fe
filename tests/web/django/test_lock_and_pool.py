"""DjangoAdvisoryLock on Django's connection (threads, timeouts, ids), guard_pool's idle
window on a real psycopg_pool, and the django-health-check check."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from seerrperf import LockTimeout, PgAdvisoryLock, pool_factory
from seerrperf.django import DjangoAdvisoryLock, check_health, guard_pool
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

pytestmark = pytest.mark.usefixtures("django_project")

TABLE = "seerrperf_lock_test"


@pytest.fixture
def table() -> Iterator[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (tmdb_id integer NOT NULL)")
        cursor.execute(f"TRUNCATE {TABLE}")
    yield TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {TABLE}")
    connection.close()


def test_twenty_threads_write_one_row(table: str) -> None:
    from django.db import connection, connections

    lock = DjangoAdvisoryLock(namespace="lock-test")
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def worker() -> None:
        try:
            start.wait(10)
            with lock(("movie", 603), timeout=10.0), connection.cursor() as cursor:
                cursor.execute(f"SELECT 1 FROM {table} WHERE tmdb_id = 603")
                if cursor.fetchone() is None:
                    cursor.execute(f"INSERT INTO {table} VALUES (603)")
                    outcomes.append("created")
                else:
                    outcomes.append("duplicate")
        finally:
            connections.close_all()  # this thread's connection back to the pool

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["created"] + ["duplicate"] * 19
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        assert cursor.fetchone() == (1,)
    stats = lock.stats()
    assert (stats.acquisitions, stats.held_keys, stats.timeouts) == (20, 0, 0)


def test_a_key_held_elsewhere_times_out_and_the_ids_are_pgadvisorylocks(
    postgres_dsn: str,
) -> None:
    lock = DjangoAdvisoryLock(namespace="lock-test")
    with pool_factory(postgres_dsn, min_size=1, max_size=1) as pool:
        other = PgAdvisoryLock(pool, namespace="lock-test")
        assert other.advisory_key(("movie", 1)) == lock.advisory_key(("movie", 1))
        with other(("movie", 1)), pytest.raises(LockTimeout):  # another session holds it
            with lock(("movie", 1), timeout=0.2):
                raise AssertionError("acquired a key another session holds")
    assert lock.stats().timeouts == 1
    with lock(("movie", 1), timeout=1.0):  # free again; and the transaction rolled back
        pass


def test_guard_pool_checks_only_connections_idle_for_a_second(postgres_dsn: str) -> None:
    checks: list[int] = []

    def counting(conn: psycopg.Connection[Any]) -> None:
        checks.append(1)
        ConnectionPool.check_connection(conn)

    clock = FakeClock()
    with ConnectionPool(postgres_dsn, min_size=1, max_size=1, check=counting, open=True) as pool:
        guard_pool(pool, clock=clock)
        guard_pool(pool, clock=clock)  # idempotent: wrapped once
        for _ in range(3):  # in quick succession: only the first is checked
            with pool.connection(timeout=5):
                clock.advance(0.1)
        assert len(checks) == 1
        clock.advance(1.5)
        with pool.connection(timeout=5):
            pass
        assert len(checks) == 2


def test_readiness_says_why_a_database_is_not_postgresql() -> None:
    result = check_health("lite")
    assert not result.healthy
    assert "sqlite backend" in str(result.error)


def test_the_django_health_check_check() -> None:
    # django-health-check is a dev dependency: a missing one fails here, never skips.
    from health_check.exceptions import ServiceUnavailable

    from seerrperf.django.health_check import Database

    Database().run()  # passes: no exception
    with pytest.raises(ServiceUnavailable, match="sqlite"):
        Database(alias="lite").run()


def test_no_secret_in_a_failed_check_or_the_settings(caplog: pytest.LogCaptureFixture) -> None:
    from django.db import connections

    from seerrperf.django import config

    try:
        with caplog.at_level("DEBUG"):
            result = check_health("unreachable", timeout=1.0)
    finally:
        connections["unreachable"].close_pool()  # stop its reconnection attempts
    assert not result.healthy
    assert SENTINEL not in repr(result) + str(result.as_dict()) + caplog.text
    assert "django-tmdb-token" not in repr(config())
