"""In-process: health views, json_response, the middleware's outage contract, config errors."""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client

from seerrperf import ConfigurationError, etag_for
from seerrperf.django import DjangoConfig
from seerrperf.testing import FakeTmdb
from tests._support import SENTINEL

pytestmark = pytest.mark.usefixtures("django_project")


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def test_liveness_and_readiness(client: Client) -> None:
    live = client.get("/health/live")
    assert (live.status_code, live.content) == (200, b'{"status":"pass"}')
    assert live["Content-Type"] == "application/health+json"
    assert live["Cache-Control"] == "no-store"
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert json.loads(ready.content)["status"] == "pass"
    assert ready["Content-Type"] == "application/health+json"
    assert ready["Cache-Control"] == "no-store"
    assert client.post("/health/ready").status_code == 405


def test_readiness_opens_djangos_pool_before_its_first_query(client: Client) -> None:
    from django.db import connections

    connections["default"].close_pool()  # the next pool is new and unopened
    assert connections["default"].pool.closed
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.content  # not PoolClosed


def test_readiness_names_a_database_that_is_not_postgresql() -> None:
    from django.test import override_settings

    from seerrperf.django import check_health

    with override_settings(SEERRPERF={"DATABASE": "nowhere"}):
        result = check_health()
    assert not result.healthy
    assert "'nowhere'" in str(result.error)


def test_readiness_without_djangos_pool_uses_a_bounded_pool_of_its_own() -> None:
    from seerrperf.django import check_health

    result = check_health("direct")
    assert (result.healthy, result.status) == (True, "pass")


def test_json_response_etag_is_the_bytes_sent_and_304(
    client: Client, fake_tmdb: tuple[FakeTmdb, str]
) -> None:
    first = client.get("/movie/603")
    assert first.status_code == 200
    assert first.content == '{"title":"The Matrix","titre":"\u00e9t\u00e9"}'.encode()
    assert first["ETag"] == etag_for(first.content)
    assert first["Cache-Control"] == "max-age=60"
    again = client.get("/movie/603", headers={"If-None-Match": first["ETag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert again["ETag"] == first["ETag"]
    assert "Content-Type" not in again
    assert client.get("/movie/603", headers={"If-None-Match": '"other"'}).status_code == 200
    assert fake_tmdb[0].stats().requests_by_path["/3/movie/603"] == 1  # cached
    missing = client.get("/movie/9999999")
    assert (missing.status_code, missing["Cache-Control"]) == (404, "no-store")
    assert "ETag" not in missing


def test_an_outage_is_a_503_problem_and_a_bug_a_500(client: Client) -> None:
    down = client.get("/fail/database")
    assert down.status_code == 503
    assert down["Content-Type"] == "application/problem+json"
    assert down["Cache-Control"] == "no-store"
    assert down["Retry-After"] == "5"
    assert json.loads(down.content)["type"].endswith("#database-unavailable")
    assert b"connection lost" not in down.content
    wrapped = client.get("/fail/django-database")  # django.db.OperationalError around psycopg's
    assert wrapped.status_code == 503
    assert json.loads(wrapped.content)["type"].endswith("#database-unavailable")
    bug = client.get("/fail/bug")
    assert (bug.status_code, bug["Cache-Control"]) == (500, "no-store")


def test_every_error_is_no_store_and_large_bodies_are_refused(client: Client) -> None:
    conflict = client.get("/conflict")
    assert (conflict.status_code, conflict["Cache-Control"]) == (409, "no-store")
    assert "ETag" not in conflict
    missing = client.get("/nowhere")
    assert (missing.status_code, missing["Cache-Control"]) == (404, "no-store")
    large = client.generic("POST", "/movie/603", data=b" " * 2000)
    assert large.status_code == 413
    assert large["Content-Type"] == "application/problem+json"


def test_the_setting_is_checked_key_by_key() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key 'TMDB_TOKEN'"):
        DjangoConfig.from_setting({"TMDB_TOKEN": "x"})
    with pytest.raises(ConfigurationError, match=r"SEERRPERF\['HEALTH_TIMEOUT'\]"):
        DjangoConfig.from_setting({"health_timeout": -1})
    with pytest.raises(ConfigurationError, match=r"DATABASES configures the database"):
        DjangoConfig.from_setting({"DATABASE_URL": "postgresql://x"})
    with pytest.raises(ConfigurationError, match=r"SEERRPERF\['LOCK'\]"):
        DjangoConfig.from_setting({"LOCK": "redis"})
    with pytest.raises(ConfigurationError) as both:
        DjangoConfig.from_setting({"TMDB_API_KEY": SENTINEL, "TMDB_ACCESS_TOKEN": SENTINEL})
    assert SENTINEL not in str(both.value)
    checked = DjangoConfig.from_setting({"ttl_policy": "seerr", "CACHE_PRESET": "seerr"})
    assert (checked.cache_preset, checked.lock, checked.database) == (
        "seerr",
        "advisory",
        "default",
    )
    assert checked.integration.ttl_policy is not None


def test_system_checks_and_the_health_command() -> None:
    from django.core.management import call_command
    from django.test import override_settings

    from seerrperf.django._checks import check_database_timeouts, check_setting, timeout_warnings

    assert check_database_timeouts() == []  # both databases use database_options()
    bare = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "OPTIONS": {}}}
    ids = sorted(message.id for message in timeout_warnings(bare))
    assert ids == ["seerrperf.W001", "seerrperf.W002"]
    with override_settings(SEERRPERF={"LOCK": "nope"}):
        assert [message.id for message in check_setting()] == ["seerrperf.E001"]
    out = io.StringIO()
    call_command("seerrperf_health", stdout=out)
    assert json.loads(out.getvalue())["status"] == "pass"
    with pytest.raises(SystemExit) as failed:
        call_command("seerrperf_health", "--database", "nowhere", stdout=io.StringIO())
    assert failed.value.code == 1
