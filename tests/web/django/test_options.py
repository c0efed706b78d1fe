"""database_options(): PoolSettings as DATABASES OPTIONS, used by Django's own psycopg pool."""

from __future__ import annotations

import pytest

from seerrperf import ConfigurationError, PoolSettings
from seerrperf.django import database_options


def test_the_defaults_are_pool_settings() -> None:
    options = database_options()
    defaults = PoolSettings()
    assert options["pool"] == {
        "min_size": defaults.min_size,
        "max_size": defaults.max_size,
        "timeout": defaults.timeout,
        "max_idle": defaults.max_idle,
        "max_lifetime": defaults.max_lifetime,
        "max_waiting": defaults.max_waiting,
    }
    assert "check" not in options["pool"]  # Django passes it: no "multiple values for 'check'"
    assert options["connect_timeout"] == 2
    assert (options["keepalives"], options["keepalives_idle"]) == (1, 10)
    assert options["options"] == (
        "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
    )


def test_overrides_and_pgbouncer() -> None:
    options = database_options(max_size=3, statement_timeout=5.0, application_name="web")
    assert options["pool"]["max_size"] == 3
    assert "statement_timeout=5000" in options["options"]
    assert options["application_name"] == "web"
    bounced = database_options(pgbouncer=True, pool=False)
    assert "options" not in bounced  # PgBouncer refuses startup options
    assert "pool" not in bounced
    assert bounced["prepare_threshold"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_size": 0}, "max_size"),
        ({"min_size": 5, "max_size": 2}, "min_size (5) must not exceed max_size (2)"),
        ({"connect_timeout": 1}, "connect_timeout"),
        ({"nope": 1}, "unknown pool setting(s): nope"),
        ({"check": False}, "Django passes the pool's check itself"),
        ({"query_timeout": 3.0}, "does not take query_timeout"),
        ({"pool": "yes"}, "pool"),
    ],
)
def test_bad_values_are_configuration_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        database_options(**overrides)  # type: ignore[arg-type]


@pytest.mark.usefixtures("django_project")
def test_djangos_pool_takes_them_and_the_server_applies_them() -> None:
    from django.db import connections
    from psycopg_pool import ConnectionPool

    wrapper = connections["default"]
    pool = wrapper.pool
    assert isinstance(pool, ConnectionPool)  # built by Django from OPTIONS["pool"]
    assert (pool.min_size, pool.max_size, pool.timeout) == (1, 4, 2.0)
    wrapper.close()  # a connection this thread held from an earlier test goes back first
    before = pool.get_stats().get("requests_num", 0)
    with wrapper.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'),"
            " current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('application_name')"
        )
        row = cursor.fetchone()
    wrapper.close()  # back to the pool
    assert row == ("30s", "1min", "seerrperf")
    assert pool.get_stats()["requests_num"] > before
    direct = connections["direct"]
    assert direct.pool is None
    with direct.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("30s",)
    direct.close()
