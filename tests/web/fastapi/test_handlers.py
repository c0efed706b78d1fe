"""seerrperf.fastapi's error contract and request guard, through the ASGI interface.

No database here: the routes raise what a database or TMDB would. The
real-socket and real-PostgreSQL versions are in test_app.py and
tests/examples/test_media_app.py.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import psycopg
import psycopg_pool
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from psycopg import errors as pg
from pydantic import BaseModel, ConfigDict

from seerrperf import LockTimeout, TmdbAuthError, TmdbRateLimited, TmdbUnavailable
from seerrperf.fastapi import GuardMiddleware, Pool, Seerrperf, json_body
from tests._support import SENTINEL

pytestmark = pytest.mark.anyio

LIMIT = 100


def rate_limited() -> Exception:
    error = TmdbRateLimited("TMDB /movie/1: HTTP 429", status=429, path="/movie/1")
    error.retry_after = 7.2
    return error


ERRORS: dict[str, Any] = {
    "operational": lambda: psycopg.OperationalError(f"connection to {SENTINEL} lost"),
    "pool-timeout": lambda: psycopg_pool.PoolTimeout(f"pool {SENTINEL}: no connection"),
    "statement-timeout": lambda: pg.lookup("57014")(f"canceling statement {SENTINEL}"),
    "tmdb-down": lambda: TmdbUnavailable(f"TMDB {SENTINEL}", status=502, path="/movie/1"),
    "tmdb-429": rate_limited,
    "lock": lambda: LockTimeout(f"no lock for {SENTINEL}"),
    "group": lambda: ExceptionGroup(
        "both", [psycopg.OperationalError("a"), psycopg_pool.PoolTimeout("b")]
    ),
    # Not outages: a 500 that says nothing.
    "unique": lambda: pg.lookup("23505")(f"duplicate key {SENTINEL}"),
    "tmdb-auth": lambda: TmdbAuthError(f"TMDB {SENTINEL}", status=401, path="/movie/1"),
    "mixed-group": lambda: ExceptionGroup(
        "mixed", [psycopg.OperationalError("a"), KeyError(SENTINEL)]
    ),
    "bug": lambda: KeyError(SENTINEL),
}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    count: int


def user(x_user: Annotated[str | None, Header()] = None) -> str:
    if x_user is None:
        raise HTTPException(401, "who are you?")
    return x_user


sp = Seerrperf(max_body_size=LIMIT)
app = FastAPI()
sp.install(app)
read_bodies: list[int] = []


@app.get("/raise/{name}")
async def boom(name: str) -> None:
    raise ERRORS[name]()


@app.post("/raw")
async def raw(request: Request) -> dict[str, int]:
    body = await request.body()
    read_bodies.append(len(body))
    return {"size": len(body)}


@app.post("/model")
async def model(body: Model) -> dict[str, str]:
    return {"kind": body.kind}


@app.post("/declared-body")
async def declared_body(who: Annotated[str, Depends(user)], body: Model) -> dict[str, str]:
    return {"who": who}


@app.post("/auth-first")
async def auth_first(
    who: Annotated[str, Depends(user)], body: Annotated[Model, json_body(Model)]
) -> dict[str, Any]:
    return {"who": who, "kind": body.kind, "count": body.count}


@app.get("/cacheable-error")
async def cacheable_error() -> Response:
    headers = {"Cache-Control": "public, max-age=600", "ETag": '"x"', "Set-Cookie": "a=1"}
    return JSONResponse({"error": "nope"}, 400, headers=headers)


@app.get("/slash/")
async def slash() -> dict[str, bool]:
    return {"ok": True}


@app.get("/elsewhere")
async def elsewhere() -> Response:
    return RedirectResponse("https://accounts.example/login")


@app.get("/pool")
async def pool(pool: Pool) -> dict[str, str]:
    return {"name": pool.name}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# --- outages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "retry_after"),
    [
        ("operational", "database-unavailable", "5"),
        ("pool-timeout", "database-unavailable", "5"),
        ("statement-timeout", "database-timeout", "5"),
        ("tmdb-down", "upstream-unavailable", "5"),
        ("tmdb-429", "upstream-rate-limited", "8"),  # the error's 7.2 s, rounded up
        ("lock", "busy", "1"),
        ("group", "database-unavailable", "5"),
    ],
)
async def test_outages_answer_503_problem_json(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    name: str,
    kind: str,
    retry_after: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="seerrperf.fastapi"):
        response = await client.get(f"/raise/{name}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == retry_after
    body = response.json()
    assert body["status"] == 503
    assert body["type"].endswith(f"/docs/outages.md#{kind}")
    assert set(body) == {"type", "title", "status", "detail"}
    assert SENTINEL not in response.text
    (record,) = [r for r in caplog.records if r.name == "seerrperf.fastapi"]
    assert kind in record.getMessage()
    assert record.exc_info is None
    assert SENTINEL not in record.getMessage()


@pytest.mark.parametrize("name", ["unique", "tmdb-auth", "mixed-group", "bug"])
async def test_other_errors_answer_a_500_that_says_nothing(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.get(f"/raise/{name}")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert "retry-after" not in response.headers
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The server could not answer this request.",
    }


async def test_a_provider_without_a_running_lifespan_is_a_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/pool")
    assert response.status_code == 500
    assert response.headers["cache-control"] == "no-store"


# --- every error no-store -----------------------------------------------------------------


async def test_every_error_response_is_no_store(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nowhere")
    wrong_method = await client.delete("/slash/")
    unauthorised = await client.post("/auth-first", json={"kind": "a", "count": 1})
    built = await client.get("/cacheable-error")
    fine = await client.get("/slash/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert wrong_method.status_code == 405
    assert (unauthorised.status_code, unauthorised.json()) == (401, {"detail": "who are you?"})
    for response in (missing, wrong_method, unauthorised, built):
        assert response.headers.get_list("cache-control") == ["no-store"], response.url
    assert built.status_code == 400
    assert "etag" not in built.headers
    assert built.headers["set-cookie"] == "a=1"
    assert "cache-control" not in fine.headers  # successes are the route's business


# --- 422s ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/model", "/auth-first"])
@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"kind": 5, "count": SENTINEL}),
        json.dumps({"kind": "a", "count": 1, SENTINEL: 1}),
        json.dumps({"kind": "a", "count": 1, f"<b>{SENTINEL}</b>": 1}),
        json.dumps([SENTINEL]),
        '{"kind": "' + SENTINEL,
        SENTINEL,
    ],
)
async def test_validation_errors_never_echo_the_input(
    client: httpx.AsyncClient, path: str, content: str
) -> None:
    response = await client.post(
        path, content=content, headers={"Content-Type": "application/json", "X-User": "u"}
    )
    assert response.status_code == 422
    assert response.headers["cache-control"] == "no-store"
    assert SENTINEL not in response.text
    errors = response.json()["detail"]
    assert errors
    for error in errors:
        assert set(error) == {"type", "loc", "msg"}
        assert error["loc"][0] == "body"


async def test_validation_errors_still_say_what_and_where(client: httpx.AsyncClient) -> None:
    response = await client.post("/model", json={"kind": "a", "count": "many", "extra": 1})
    assert response.json() == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["body", "count"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
            },
            {
                "type": "extra_forbidden",
                "loc": ["body", "*"],
                "msg": "Extra inputs are not permitted",
            },
        ]
    }


# --- bodies -------------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    read_bodies.clear()
    response = await client.post("/raw", content=b"x" * (LIMIT + 1))
    at_limit = await client.post("/raw", content=b"x" * LIMIT)
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["title"] == "Content Too Large"
    assert at_limit.json() == {"size": LIMIT}
    assert read_bodies == [LIMIT]  # the route never ran for the large one


async def test_a_body_without_a_length_is_counted_as_it_arrives(
    client: httpx.AsyncClient,
) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(50):
            sent.append(40)
            yield b"y" * 40

    read_bodies.clear()
    response = await client.post("/raw", content=chunks())
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert read_bodies == []
    assert sum(sent) <= LIMIT + 40  # reading stopped at the first chunk over the limit


async def test_json_body_reads_nothing_before_authentication(client: httpx.AsyncClient) -> None:
    pulled: list[str] = []

    def body(path: str) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            pulled.append(path)
            yield b'{"kind": "a", "count": 1}'

        return chunks()

    first = await client.post("/auth-first", content=body("auth-first"))
    declared = await client.post("/declared-body", content=body("declared-body"))
    accepted = await client.post(
        "/auth-first", json={"kind": "a", "count": 2}, headers={"X-User": "ann"}
    )
    assert (first.status_code, declared.status_code) == (401, 401)
    assert pulled == ["declared-body"]  # FastAPI reads a declared body before dependencies
    assert accepted.json() == {"who": "ann", "kind": "a", "count": 2}
    not_json = await client.post(
        "/auth-first", content=b"kind=a", headers={"X-User": "ann", "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415


# --- redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "test", "EVIL.example:8443"])
async def test_slash_redirects_never_name_the_host_header(
    client: httpx.AsyncClient, host: str
) -> None:
    response = await client.get("/slash?x=1", headers={"Host": host})
    assert response.status_code == 307
    assert response.headers["location"] == "/slash/?x=1"


async def test_redirects_elsewhere_are_left_alone(client: httpx.AsyncClient) -> None:
    response = await client.get("/elsewhere")
    assert response.headers["location"] == "https://accounts.example/login"


async def test_the_middleware_works_on_a_plain_asgi_app() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [(b"cache-control", b"public, max-age=60"), (b"expires", b"x")],
            }
        )
        await send({"type": "http.response.body", "body": b"bad gateway"})

    transport = httpx.ASGITransport(app=GuardMiddleware(bare, max_body_size=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/", content=b"z" * 10_000)
    assert response.status_code == 502
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert "expires" not in response.headers


# --- the module ---------------------------------------------------------------------------


def test_importing_seerrperf_imports_no_web_framework() -> None:
    code = (
        "import sys, seerrperf\n"
        "print(sorted(m for m in ('fastapi', 'starlette', 'pydantic') if m in sys.modules))\n"
        "import seerrperf.fastapi\n"
        "print('fastapi' in sys.modules and 'starlette' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["[]", "True"]


async def test_relative_redirects_can_be_turned_off() -> None:
    absolute = FastAPI()
    Seerrperf().install(absolute, relative_redirects=False)

    @absolute.get("/slash/")
    async def slash() -> dict[str, bool]:
        return {"ok": True}

    transport = httpx.ASGITransport(app=absolute)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/slash")
    assert response.headers["location"] == "http://test/slash/"
