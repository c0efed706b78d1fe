"""The error contract through Flask's WSGI interface: outages 503, every error no-store,
bodies bounded, input never echoed, redirects relative.

No database here: the views raise what a database or TMDB would. The real
PostgreSQL and real-socket versions are in test_example.py.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
import pytest
from flask import Flask, abort, redirect, request
from psycopg import errors as pg
from werkzeug.test import Client

from seerrperf import LockTimeout, TmdbAuthError, TmdbRateLimited, TmdbUnavailable
from seerrperf.flask import Seerrperf, WsgiGuard
from tests._support import SENTINEL

LIMIT = 100
PROBLEM = "application/problem+json"


def rate_limited() -> Exception:
    error = TmdbRateLimited("TMDB /movie/1: HTTP 429", status=429, path="/movie/1")
    error.retry_after = 7.2
    return error


ERRORS: dict[str, Callable[[], Exception]] = {
    "operational": lambda: psycopg.OperationalError(f"connection to {SENTINEL} lost"),
    "pool-timeout": lambda: psycopg_pool.PoolTimeout(f"pool {SENTINEL}: no connection"),
    "statement-timeout": lambda: pg.lookup("57014")(f"canceling statement {SENTINEL}"),
    "tmdb-down": lambda: TmdbUnavailable(f"TMDB {SENTINEL}", status=502, path="/movie/1"),
    "tmdb-429": rate_limited,
    "lock": lambda: LockTimeout(f"no lock for {SENTINEL}"),
    "group": lambda: ExceptionGroup(
        "both", [psycopg.OperationalError("a"), psycopg_pool.PoolTimeout("b")]
    ),
    "unique": lambda: pg.lookup("23505")(f"duplicate key {SENTINEL}"),
    "tmdb-auth": lambda: TmdbAuthError(f"TMDB {SENTINEL}", status=401, path="/movie/1"),
    "mixed-group": lambda: ExceptionGroup(
        "mixed", [psycopg.OperationalError("a"), KeyError(SENTINEL)]
    ),
    "bug": lambda: KeyError(SENTINEL),
}
OUTAGES = {
    "operational": ("database-unavailable", "5"),
    "pool-timeout": ("database-unavailable", "5"),
    "statement-timeout": ("database-timeout", "5"),
    "tmdb-down": ("upstream-unavailable", "5"),
    "tmdb-429": ("upstream-rate-limited", "8"),
    "lock": ("busy", "1"),
    "group": ("database-unavailable", "5"),
}


def build(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SEERRPERF_DATABASE_URL": "postgresql://app@db.invalid/app", **config})
    Seerrperf(app)

    @app.route("/raise/<name>", methods=["GET", "POST"])
    def fail(name: str) -> str:
        raise ERRORS[name]()

    @app.get("/abort/<int:code>")
    def stop(code: int) -> str:
        abort(code, "refused")

    @app.get("/own-error")
    def own_error() -> tuple[str, int, dict[str, str]]:
        headers = {"Cache-Control": "public, max-age=60", "ETag": '"x"', "Expires": "never"}
        return "nope", 400, headers

    @app.post("/echo")
    def echo() -> dict[str, Any]:
        body = request.get_json()
        return {"got": len(json.dumps(body))}

    @app.post("/length")
    def length() -> dict[str, int]:
        return {"length": len(request.get_data())}

    @app.get("/dir/")
    def directory() -> str:
        return "dir"

    @app.get("/go")
    def go() -> Any:
        return redirect("http://localhost/dir/?a=1")

    @app.get("/away")
    def away() -> Any:
        return redirect("https://example.org/elsewhere")

    return app


@pytest.fixture
def client() -> Client:
    return build(SEERRPERF_MAX_BODY_SIZE=LIMIT).test_client()


@pytest.mark.parametrize("name", sorted(OUTAGES))
def test_outages_answer_503_problem_with_retry_after(
    client: Client, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    kind, retry_after = OUTAGES[name]
    with caplog.at_level(logging.WARNING, logger="seerrperf.flask"):
        response = client.post(f"/raise/{name}")
    assert response.status_code == 503
    assert response.headers["Content-Type"] == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Retry-After"] == retry_after
    body = response.get_json(force=True)
    assert body["status"] == 503
    assert body["type"].endswith(f"#{kind}")
    assert SENTINEL not in response.get_data(as_text=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"POST answered 503: {kind} ({type(ERRORS[name]()).__name__})"
    ]
    assert not any(r.exc_info for r in caplog.records)  # one line, no traceback


@pytest.mark.parametrize("name", ["unique", "tmdb-auth", "mixed-group", "bug"])
def test_other_errors_answer_a_500_problem_that_says_nothing(
    client: Client, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get(f"/raise/{name}")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    assert "Retry-After" not in response.headers
    assert response.get_json(force=True)["title"] == "Internal Server Error"
    assert SENTINEL not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records)  # Flask still logs the traceback


def test_every_error_response_is_no_store_html_pages_included(client: Client) -> None:
    for path, status in (("/nowhere", 404), ("/abort/409", 409), ("/abort/401", 401)):
        response = client.get(path)
        assert response.status_code == status
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Cache-Control"] == "no-store"
    not_allowed = client.delete("/go")
    assert (not_allowed.status_code, not_allowed.headers["Cache-Control"]) == (405, "no-store")
    own = client.get("/own-error")
    assert own.status_code == 400
    assert own.headers["Cache-Control"] == "no-store"
    assert "ETag" not in own.headers
    assert "Expires" not in own.headers


def test_handlers_the_app_registered_first_are_kept() -> None:
    app = Flask(__name__)
    app.config["SEERRPERF_DATABASE_URL"] = "postgresql://app@db.invalid/app"
    app.register_error_handler(LockTimeout, lambda exc: ("try later", 429))
    Seerrperf(app)

    @app.get("/busy")
    def busy() -> str:
        raise LockTimeout("x")

    response = app.test_client().get("/busy")
    assert (response.status_code, response.get_data()) == (429, b"try later")
    assert response.headers["Cache-Control"] == "no-store"


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


def test_a_declared_body_over_the_limit_is_refused_unread(client: Client) -> None:
    environ_overrides = {"wsgi.input": Unreadable(), "CONTENT_LENGTH": str(LIMIT + 1)}
    for path in ("/length", "/nowhere", "/raise/bug"):  # before routing, before the view
        response = client.post(path, environ_overrides=environ_overrides)
        assert response.status_code == 413
        assert response.headers["Content-Type"] == PROBLEM
        assert response.headers["Cache-Control"] == "no-store"
        assert response.get_json(force=True)["detail"] == (
            f"The request body must not be larger than {LIMIT} bytes."
        )
    huge_length = {**environ_overrides, "CONTENT_LENGTH": "9" * 40}
    huge = client.post("/length", environ_overrides=huge_length)
    assert huge.status_code == 413
    at_limit = client.post("/length", data=b"x" * LIMIT)
    assert at_limit.get_json() == {"length": LIMIT}


def test_a_body_without_a_length_is_cut_off_at_the_limit(client: Client) -> None:
    stream = io.BytesIO(b"x" * (LIMIT * 10))
    response = client.post(
        "/length",
        input_stream=stream,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 413
    assert response.headers["Content-Type"] == PROBLEM
    assert stream.tell() <= LIMIT + 64 * 1024  # werkzeug reads in chunks, never the rest
    for size, status in ((3, 200), (LIMIT, 200), (LIMIT + 1, 413)):
        response = client.post(
            "/length",
            input_stream=io.BytesIO(b"x" * size),
            environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
        )
        assert response.status_code == status, size
        if status == 200:
            assert response.get_json() == {"length": size}  # never a silently cut body


def test_invalid_json_is_refused_without_echo(client: Client) -> None:
    response = client.post("/echo", data=f'{{"{SENTINEL}": ', content_type="application/json")
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert SENTINEL not in response.get_data(as_text=True)


def test_redirects_to_the_requests_own_host_are_relative(client: Client) -> None:
    slash = client.get("/dir", headers={"Host": "evil.example"})  # werkzeug's strict slashes
    assert slash.status_code == 308
    assert slash.headers["Location"] == "/dir/"
    own = client.get("/go", headers={"Host": "localhost"})
    assert own.headers["Location"] == "/dir/?a=1"
    away = client.get("/away", headers={"Host": "evil.example"})
    assert away.headers["Location"] == "https://example.org/elsewhere"


def test_redirects_stay_absolute_when_the_app_says_so() -> None:
    client = build(SEERRPERF_RELATIVE_REDIRECTS=False).test_client()
    slash = client.get("/dir", headers={"Host": "evil.example"})
    assert slash.headers["Location"] == "http://evil.example/dir/"


def test_the_guard_checks_its_arguments() -> None:
    from seerrperf import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_body_size"):
        WsgiGuard(Flask(__name__).wsgi_app, max_body_size=-1)
    with pytest.raises(ConfigurationError, match="app must be a WSGI app"):
        WsgiGuard("app", max_body_size=None)  # type: ignore[arg-type]


def test_behind_proxyfix_the_forwarded_host_counts_as_the_requests_own() -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = build()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_host=1, x_proto=1)  # type: ignore[method-assign]
    headers = {"Host": "internal:8000", "X-Forwarded-Host": "public.example"}
    slash = app.test_client().get("/dir", headers={**headers, "X-Forwarded-Proto": "https"})
    assert (slash.status_code, slash.headers["Location"]) == (308, "/dir/")
