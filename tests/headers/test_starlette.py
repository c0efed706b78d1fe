"""seerrperf.starlette.json_response: validators, 304s and never-cacheable errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from media_app import serve
from seerrperf import CacheControl, ConfigurationError, etag_for
from seerrperf.starlette import json_response

LAST_MODIFIED = dt.datetime(1994, 10, 29, 19, 43, 31, tzinfo=dt.UTC)

# -- Starlette glue ----------------------------------------------------------------

MOVIE = {"id": 438631, "title": "Dune", "genres": ["Science Fiction", "Adventure"]}
PUBLIC = CacheControl(public=True, max_age=60, stale_while_revalidate=600)


async def movie(request: Request) -> Response:
    status = int(request.query_params.get("status", "200"))
    return json_response(
        request,
        MOVIE,
        cache_control=PUBLIC,
        status_code=status,
        headers={"Vary": "Accept-Encoding"},
        weak=request.query_params.get("weak") == "1",
    )


async def dated(request: Request) -> Response:
    private = CacheControl(private=True, no_cache=True)
    return json_response(request, MOVIE, cache_control=private, last_modified=LAST_MODIFIED)


app = Starlette(
    routes=[Route("/movie", movie, methods=["GET", "HEAD", "POST"]), Route("/dated", dated)]
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


@pytest.mark.anyio
async def test_json_response_sends_validators_and_answers_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/movie")
    assert first.status_code == 200
    assert first.json() == MOVIE
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    assert first.headers["etag"] == etag_for(MOVIE) == etag_for(first.content)
    second = await client.get("/movie", headers={"If-None-Match": first.headers["etag"]})
    assert second.status_code == 304
    assert second.content == b""
    assert "content-type" not in second.headers
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["cache-control"] == first.headers["cache-control"]
    assert second.headers["vary"] == "Accept-Encoding"
    head = await client.head("/movie", headers={"If-None-Match": "*"})
    assert head.status_code == 304


@pytest.mark.anyio
async def test_json_response_weak_tags_and_unsafe_methods(client: httpx.AsyncClient) -> None:
    weak = await client.get("/movie?weak=1")
    assert weak.headers["etag"] == etag_for(MOVIE, weak=True)
    strong_form = weak.headers["etag"].removeprefix("W/")
    again = await client.get("/movie?weak=1", headers={"If-None-Match": strong_form})
    assert again.status_code == 304
    post = await client.post("/movie", headers={"If-None-Match": weak.headers["etag"]})
    assert post.status_code == 200
    assert post.json() == MOVIE


@pytest.mark.anyio
@pytest.mark.parametrize("status", [404, 500, 503, 302])
async def test_errors_are_never_304_and_never_cacheable(
    client: httpx.AsyncClient, status: int
) -> None:
    response = await client.get(f"/movie?status={status}", headers={"If-None-Match": "*"})
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    assert "etag" not in response.headers
    assert response.json() == MOVIE


@pytest.mark.anyio
async def test_json_response_last_modified(client: httpx.AsyncClient) -> None:
    first = await client.get("/dated")
    assert first.headers["last-modified"] == "Sat, 29 Oct 1994 19:43:31 GMT"
    assert first.headers["cache-control"] == "private, no-cache"
    second = await client.get(
        "/dated", headers={"If-Modified-Since": first.headers["last-modified"]}
    )
    assert second.status_code == 304
    assert second.headers["last-modified"] == first.headers["last-modified"]


def test_json_response_refuses_headers_it_owns() -> None:
    request = Request({"type": "http", "method": "GET", "headers": []})
    with pytest.raises(ConfigurationError, match="Cache-Control"):
        json_response(request, MOVIE, cache_control=PUBLIC, headers={"Cache-Control": "public"})


@pytest.mark.anyio
async def test_real_socket_second_request_gets_304() -> None:
    # The example app's in-loop uvicorn runner: a real socket on 127.0.0.1.
    async with serve(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        first = await http.get("/movie")
        second = await http.get("/movie", headers={"If-None-Match": first.headers["etag"]})
    assert first.status_code == 200
    assert first.json() == MOVIE
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers.get("content-length", "0") == "0"
