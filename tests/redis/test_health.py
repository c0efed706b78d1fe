"""Redis health checks: a real PING, reported as a non-critical component of health_report."""

from __future__ import annotations

import pytest

from seerrperf import (
    ConfigurationError,
    HealthResult,
    RedisBackend,
    async_check_redis_health,
    check_redis_health,
    health_report,
)
from seerrperf.testing import EmbeddedRedis, FakeClock
from tests._support import SENTINEL

DATABASE_OK = HealthResult(healthy=True, status="pass", latency_ms=1.0)
DATABASE_DOWN = HealthResult(healthy=False, status="fail", latency_ms=1.0, error="down")


def test_a_live_redis_passes(backend: RedisBackend) -> None:
    result = check_redis_health(backend)
    assert (result.healthy, result.status, result.component, result.critical) == (
        True,
        "pass",
        "redis",
        False,
    )
    assert result.error is None
    assert result.latency_ms >= 0
    assert result.as_dict()["critical"] is False


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_async_check_on_both_anyio_backends(
    redis_url: str, namespace: str, anyio_backend: str
) -> None:
    async with RedisBackend.from_url(redis_url, namespace=namespace) as backend:
        result = await async_check_redis_health(backend)
        assert (result.healthy, result.component, result.critical) == (True, "redis", False)


def test_only_redis_down_is_a_warning_with_200() -> None:
    with EmbeddedRedis(password=SENTINEL) as server:
        with RedisBackend.from_url(server.url, timeout=0.3) as backend:
            server.stop()
            clock = FakeClock()
            result = check_redis_health(backend, clock=clock)
            assert (result.healthy, result.status, result.critical) == (False, "fail", False)
            assert result.error
            assert SENTINEL not in result.error
            report = health_report(DATABASE_OK, result)
            assert report.status_code == 200
            assert report.body["status"] == "warn"
            assert report.body["checks"]["redis:responseTime"][0]["status"] == "warn"
            assert report.body["checks"]["postgres:responseTime"][0]["status"] == "pass"
            assert SENTINEL not in report.json()
            # The database down is still a failure, Redis or not.
            failing = health_report(DATABASE_DOWN, result)
            assert (failing.status_code, failing.body["status"]) == (503, "fail")


def test_the_report_is_unchanged_for_critical_components(backend: RedisBackend) -> None:
    assert health_report(DATABASE_OK).body["status"] == "pass"
    assert health_report(DATABASE_DOWN).status_code == 503
    both = health_report(DATABASE_OK, check_redis_health(backend))
    assert (both.status_code, both.body["status"]) == (200, "pass")
    assert DATABASE_OK.critical is True


def test_a_closed_backend_reports_failure_not_an_exception(redis_url: str, namespace: str) -> None:
    backend = RedisBackend.from_url(redis_url, namespace=namespace)
    backend.close()
    result = check_redis_health(backend)
    assert result.healthy is False
    assert result.error is not None
    assert "closed" in result.error


def test_bad_arguments_are_named(backend: RedisBackend) -> None:
    with pytest.raises(ConfigurationError, match="backend must be a RedisBackend"):
        check_redis_health("redis://localhost")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="clock"):
        check_redis_health(backend, clock=1)  # type: ignore[arg-type]
