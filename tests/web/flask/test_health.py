"""The health blueprint on a real PostgreSQL that is stopped and frozen (SIGSTOP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.test import Client

from seerrperf import HealthResult
from seerrperf.flask import Seerrperf
from seerrperf.testing import EmbeddedPostgres

TIMEOUT = 1.0
# The bound: readiness answers within its timeout plus half a second.
BOUND = TIMEOUT + 0.5


@pytest.fixture(scope="module")
def app(own_server: EmbeddedPostgres) -> Iterator[tuple[Flask, Seerrperf]]:
    app = Flask(__name__)
    app.config.update(
        SEERRPERF_DATABASE_URL=own_server.dsn,
        SEERRPERF_POOL={"min_size": 1, "max_size": 2},
        SEERRPERF_HEALTH_TIMEOUT=TIMEOUT,
    )
    sp = Seerrperf(app)
    app.register_blueprint(sp.health_blueprint(version="9.9"))
    yield app, sp
    sp.close()


def timed(client: Client, path: str) -> tuple[int, float, dict[str, object], dict[str, str]]:
    start = time.monotonic()
    response = client.get(path)
    elapsed = time.monotonic() - start
    return response.status_code, elapsed, response.get_json(force=True), dict(response.headers)


def wait_ready(client: Client) -> None:
    deadline = time.monotonic() + 30
    while client.get("/health/ready").status_code != 200:  # each probe waits up to 1 s
        assert time.monotonic() < deadline, "readiness did not come back"


def test_up_then_stopped_then_back(
    app: tuple[Flask, Seerrperf], own_server: EmbeddedPostgres
) -> None:
    client = app[0].test_client()
    status, _, body, headers = timed(client, "/health/ready")
    assert (status, body["status"], body["version"]) == (200, "pass", "9.9")
    assert headers["Content-Type"] == "application/health+json"
    assert headers["Cache-Control"] == "no-store"
    own_server.stop()
    try:
        status, elapsed, body, headers = timed(client, "/health/ready")
        live = client.get("/health/live")
    finally:
        own_server.start()
    assert (status, body["status"]) == (503, "fail")
    assert elapsed < BOUND
    assert headers["Cache-Control"] == "no-store"
    assert (live.status_code, live.get_json(force=True)) == (200, {"status": "pass"})
    assert live.headers["Content-Type"] == "application/health+json"
    assert live.headers["Cache-Control"] == "no-store"
    wait_ready(client)


def test_frozen_database_answers_503_in_time(
    app: tuple[Flask, Seerrperf], own_server: EmbeddedPostgres
) -> None:
    client = app[0].test_client()
    wait_ready(client)
    own_server.pause()
    try:
        results = [timed(client, "/health/ready") for _ in range(3)]
        live = client.get("/health/live")
    finally:
        own_server.resume()
    for status, elapsed, body, _ in results:
        assert (status, body["status"]) == (503, "fail")
        assert elapsed < BOUND
    assert live.status_code == 200
    wait_ready(client)


def test_a_custom_check_is_cut_off_and_never_piles_up(app: tuple[Flask, Seerrperf]) -> None:
    flask_app, sp = app
    release = threading.Event()
    calls: list[int] = []

    def stuck() -> HealthResult:
        calls.append(1)
        release.wait(30)
        return sp.check_health()

    other = Flask("custom")
    other.config.update(
        SEERRPERF_DATABASE_URL=flask_app.config["SEERRPERF_DATABASE_URL"],
        SEERRPERF_HEALTH_TIMEOUT=TIMEOUT,
    )
    sp.init_app(other)
    other.register_blueprint(sp.health_blueprint(check=stuck, ready_path="/ready"))
    client = other.test_client()
    try:
        status, elapsed, body, _ = timed(client, "/ready")
        assert (status, elapsed < BOUND + 0.25) == (503, True)
        assert "no answer within 1 s" in str(body["checks"])
        again = timed(client, "/ready")  # the first is still stuck: fail at once
        assert again[0] == 503
        assert again[1] < TIMEOUT
        assert "has not finished" in str(again[2]["checks"])
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while (done := timed(client, "/ready"))[0] != 200:
        assert time.monotonic() < deadline
    assert done[2]["status"] == "pass"
    assert len(calls) >= 2
    sp.close(other)
