"""TmdbClient through httpx.MockTransport (and a real socket at the end)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from seerrperf import (
    ConfigurationError,
    NamedCache,
    TmdbAuthError,
    TmdbClient,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
    TtlPolicy,
)
from tests._support import SENTINEL

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock and a sleep that advances it: retries and the limiter take no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class Upstream:
    """A scripted TMDB: counts requests per path; answers with ``respond``."""

    def __init__(self, respond: Handler | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.respond = respond or self.movie
        self.gate: anyio.Event | None = None

    @staticmethod
    def movie(request: httpx.Request) -> httpx.Response:
        tail = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"id": int(tail) if tail.isdigit() else 0, "title": "x"})

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path] += 1
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        return self.respond(request)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def make_client(
    upstream: Upstream, time: FakeTime | None = None, **kwargs: Any
) -> tuple[TmdbClient, NamedCache]:
    time = time or FakeTime()
    cache = kwargs.pop("cache", None) or NamedCache("tmdb", clock=time)
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream.handler))
    kwargs.setdefault("api_key", SENTINEL)
    client = TmdbClient(
        cache=cache,
        http_client=http,
        sleep=time.sleep,
        clock=time,
        base_url="https://tmdb.test/3",
        **kwargs,
    )
    return client, cache


pytestmark = pytest.mark.anyio


async def test_concurrent_identical_requests_share_one_upstream_call() -> None:
    upstream = Upstream()
    upstream.gate = anyio.Event()
    client, _ = make_client(upstream)
    results: list[dict[str, Any]] = []

    async def one() -> None:
        results.append(await client.get_movie(603))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            upstream.gate.set()
    assert upstream.calls == {"/3/movie/603": 1}
    assert len(results) == 100
    assert all(r["id"] == 603 for r in results)
    stats = client.stats()
    assert stats.requests == 100
    assert stats.upstream_calls == 1
    assert stats.coalesced == 99


@pytest.mark.parametrize(
    ("policy", "path_call", "ttl"),
    [
        (TtlPolicy.seed(), "movie", 6 * 3600),
        (TtlPolicy.seed(), "tv", 2 * 3600),
        (TtlPolicy.seerr(), "movie", 12 * 3600),
        (TtlPolicy.seerr(), "tv", 12 * 3600),
        (TtlPolicy.seed(), "configuration", 24 * 3600),
        (TtlPolicy.seed(), "keyword", 7 * 24 * 3600),
    ],
)
async def test_tier_ttls_are_applied(policy: TtlPolicy, path_call: str, ttl: int) -> None:
    time = FakeTime()
    upstream = Upstream(lambda r: httpx.Response(200, json={"ok": True}))
    client, _ = make_client(upstream, time, ttl_policy=policy)
    call = {
        "movie": lambda: client.get_movie(603),
        "tv": lambda: client.get_tv(1399),
        "configuration": client.get_configuration,
        "keyword": lambda: client.get_keyword(180547),
    }[path_call]
    await call()
    time.now += ttl - 1
    await call()
    assert upstream.total == 1  # still fresh one second before expiry
    time.now += 1 + ttl  # past the stale-while-revalidate window too
    await call()
    assert upstream.total == 2


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once() -> None:
    time = FakeTime()
    version = 1
    upstream = Upstream(lambda r: httpx.Response(200, json={"version": version}))
    client, _ = make_client(upstream, time)
    assert (await client.get_movie(1))["version"] == 1
    version = 2
    upstream.gate = anyio.Event()
    time.now += 6 * 3600 + 10  # expired, inside the SWR window (half the TTL)
    with anyio.fail_after(10):
        answers = [(await client.get_movie(1))["version"] for _ in range(20)]
        assert answers == [1] * 20  # stale, at once, although upstream is blocked
        upstream.gate.set()
        await anyio.wait_all_tasks_blocked()  # the single background refresh finishes
    assert upstream.total == 2
    assert (await client.get_movie(1))["version"] == 2
    assert client.stats().stale_served == 20


async def test_outage_serves_stale_inside_the_window_and_fails_outside() -> None:
    time = FakeTime()
    up = True
    upstream = Upstream(
        lambda r: httpx.Response(200, json={"id": 1}) if up else httpx.Response(503)
    )
    client, _ = make_client(upstream, time, max_retries=1)
    await client.get_movie(1)
    up = False
    time.now += 6 * 3600 + 3 * 3600 + 60  # past TTL and SWR window, inside stale-if-error
    assert await client.get_movie(1) == {"id": 1}
    time.now += 24 * 3600  # past stale-if-error
    with pytest.raises(TmdbUnavailable) as info:
        await client.get_movie(1)
    assert info.value.status == 503
    assert info.value.path == "/movie/1"


async def test_429_waits_for_retry_after_then_succeeds() -> None:
    time = FakeTime()
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), None])

    def respond(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        return answer or httpx.Response(200, json={"id": 5})

    upstream = Upstream(respond)
    client, _ = make_client(upstream, time, max_rps=None)
    assert await client.get_movie(5) == {"id": 5}
    assert time.sleeps == [2.0]
    stats = client.stats()
    assert (stats.rate_limited, stats.retries, stats.upstream_calls) == (1, 1, 2)


async def test_persistent_429_raises_rate_limited_after_the_retries() -> None:
    time = FakeTime()
    upstream = Upstream(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    client, _ = make_client(upstream, time, max_retries=2, max_rps=None, max_retry_after=5)
    with pytest.raises(TmdbRateLimited):
        await client.get_movie(5)
    assert upstream.total == 3
    assert time.sleeps == [5.0, 5.0]  # Retry-After capped at max_retry_after


async def test_5xx_and_transport_errors_back_off_exponentially() -> None:
    time = FakeTime()

    def respond(request: httpx.Request) -> httpx.Response:
        if upstream.total % 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(502)

    upstream = Upstream(respond)
    client, _ = make_client(upstream, time, max_retries=3, max_rps=None)
    with pytest.raises(TmdbUnavailable):
        await client.get_movie(9)
    assert upstream.total == 4
    assert len(time.sleeps) == 3
    for attempt, delay in enumerate(time.sleeps):
        step = min(8.0, 0.5 * 2**attempt)
        assert step / 2 <= delay <= step


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, TmdbAuthError),
        (403, TmdbAuthError),
        (400, TmdbResponseError),
        (422, TmdbResponseError),
    ],
)
async def test_other_4xx_are_not_retried(status: int, error: type[Exception]) -> None:
    upstream = Upstream(
        lambda r: httpx.Response(status, json={"status_code": 7, "status_message": "nope"})
    )
    client, _ = make_client(upstream)
    with pytest.raises(error, match="nope"):
        await client.get_movie(1)
    assert upstream.total == 1


async def test_404_is_remembered_briefly() -> None:
    time = FakeTime()
    upstream = Upstream(lambda r: httpx.Response(404, json={"status_code": 34}))
    client, _ = make_client(upstream, time)
    for _ in range(3):
        with pytest.raises(TmdbNotFound):
            await client.get_movie(404404)
    assert upstream.total == 1
    assert client.stats().not_found_cached == 2
    time.now += 61
    with pytest.raises(TmdbNotFound):
        await client.get_movie(404404)
    assert upstream.total == 2


async def test_a_deleted_title_is_not_served_stale() -> None:
    time = FakeTime()
    exists = True
    upstream = Upstream(
        lambda r: httpx.Response(200, json={"id": 1}) if exists else httpx.Response(404)
    )
    client, _ = make_client(upstream, time)
    await client.get_movie(1)
    exists = False
    time.now += 6 * 3600 + 3 * 3600 + 60  # only stale-if-error could serve it now
    with pytest.raises(TmdbNotFound):
        await client.get_movie(1)


async def test_bad_json_is_a_response_error() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, content=b"<html>"))
    client, _ = make_client(upstream)
    with pytest.raises(TmdbResponseError, match="not a JSON object"):
        await client.get_movie(1)


async def test_array_endpoints_come_back_wrapped() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json=[{"iso_639_1": "en"}]))
    client, _ = make_client(upstream)
    assert await client.get_languages() == {"results": [{"iso_639_1": "en"}]}


async def test_limiter_spaces_upstream_starts() -> None:
    time = FakeTime()
    slept: list[float] = []

    async def record(seconds: float) -> None:  # time stands still: each wait shows its slot
        slept.append(seconds)
        await anyio.lowlevel.checkpoint()

    upstream = Upstream()
    client, _ = make_client(upstream, time, max_rps=10)
    client._sleep = record
    async with anyio.create_task_group() as tg:
        for movie_id in range(1, 21):
            tg.start_soon(client.get_movie, movie_id)
    assert upstream.total == 20
    assert sorted(slept) == pytest.approx([0.1 * i for i in range(1, 20)])


async def test_a_429_pauses_every_request_not_only_the_one_that_got_it() -> None:
    time = FakeTime()
    slept: list[float] = []

    async def record(seconds: float) -> None:  # time stands still: the pause still holds
        slept.append(seconds)
        await anyio.lowlevel.checkpoint()

    answers = iter([httpx.Response(429, headers={"Retry-After": "3"})])
    upstream = Upstream(lambda r: next(answers, None) or Upstream.movie(r))
    client, _ = make_client(upstream, time, max_rps=None)
    client._sleep = record
    await client.get_movie(1)  # 429, waits 3 s, retries
    await client.get_movie(2)  # a different request waits for the same pause
    assert slept == [3.0, 3.0]


async def test_batch_forms_are_aligned_and_isolate_failures() -> None:
    upstream = Upstream(
        lambda r: httpx.Response(404) if r.url.path.endswith("/2") else Upstream.movie(r)
    )
    client, _ = make_client(upstream)
    movies = await client.get_movies([3, 2, 1, 3])
    assert [m["id"] if m else None for m in movies] == [3, None, 1, 3]
    assert upstream.calls["/3/movie/3"] == 1
    shows = await client.get_tvs([7])
    assert shows[0] is not None


async def test_parameters_are_normalised_in_one_cache_key() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"page": 1, "results": []}))
    client, cache = make_client(upstream, language="en-US")
    await client.discover_movies(with_genres="28", page=1, sort_by="popularity.desc")
    await client.discover_movies(sort_by="popularity.desc", page=1, with_genres="28")
    assert upstream.total == 1
    request = upstream.requests[0]
    assert request.url.params["language"] == "en-US"
    assert request.url.params["api_key"] == SENTINEL  # sent, but never cached under
    stats = cache.stats()
    assert stats.keys == 1


async def test_bearer_token_goes_in_the_header() -> None:
    upstream = Upstream()
    client, _ = make_client(upstream, api_key=None, access_token=SENTINEL)
    await client.get_movie(603)
    request = upstream.requests[0]
    assert request.headers["Authorization"] == f"Bearer {SENTINEL}"
    assert "api_key" not in request.url.params


async def test_secrets_never_leak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = Upstream(lambda r: httpx.Response(500, text=f"echo {r.url}"))
    client, cache = make_client(upstream, max_retries=1, max_rps=None)
    with pytest.raises(TmdbUnavailable) as info:
        await client.get_movie(1)
    texts = [str(info.value), repr(info.value), repr(client), caplog.text]
    texts += [repr(key) for key, _ in cache._store.snapshot()]
    ok = Upstream()
    client2, cache2 = make_client(ok)
    await client2.get_movie(2)
    texts += [repr(key) for key, _ in cache2._store.snapshot()]
    texts.append(caplog.text)
    for text in texts:
        assert SENTINEL not in text
    assert "HTTP Request" in caplog.text  # httpx did log the request, with the key masked


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_movie("603/../x"),
        lambda c: c.get_movie(0),
        lambda c: c.get_movie(True),
        lambda c: c.get_tv(-1),
        lambda c: c.get_tv_season(1, -1),
        lambda c: c.search_multi("   "),
        lambda c: c.search_movie("matrix", page=501),
        lambda c: c.get_genres("music"),
        lambda c: c.trending("movie", "month"),
        lambda c: c.find("tt0133093", "netflix_id"),
        lambda c: c.find("..", "imdb_id"),
        lambda c: c.get("movie/603"),
        lambda c: c.get("/movie/603?api_key=x"),
        lambda c: c.get("/movie/603", {"api_key": "x"}),
        lambda c: c.get("/movie/603", {"x": [1]}),
        lambda c: c.get("/movie/603", ttl=-1),
        lambda c: c.get_movie(603, append_to_response=["credits;drop"]),
        lambda c: c.get_watch_providers("movie", region="usa"),
    ],
)
async def test_bad_input_is_rejected_before_any_request(call: Callable[[TmdbClient], Any]) -> None:
    upstream = Upstream()
    client, _ = make_client(upstream)
    with pytest.raises(ConfigurationError):
        await call(client)
    assert upstream.total == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of api_key"),
        ({"api_key": "a", "access_token": "b"}, "exactly one of api_key"),
        ({"api_key": " "}, "api_key must be"),
        ({"api_key": "a", "base_url": "ftp://x"}, "base_url"),
        ({"api_key": "a", "base_url": "https://u:p@x/3"}, "credentials"),
        ({"api_key": "a", "timeout": 0}, "timeout"),
        ({"api_key": "a", "max_retries": -1}, "max_retries"),
        ({"api_key": "a", "max_rps": 0}, "max_rps"),
        ({"api_key": "a", "language": "english"}, "language"),
        ({"api_key": "a", "region": "us"}, "region"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        TmdbClient(**kwargs)


async def test_injected_http_client_is_not_closed_but_an_owned_one_is() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(Upstream().handler))
    async with TmdbClient(api_key="k", http_client=http) as client:
        await client.get_movie(1)
    assert not http.is_closed
    await http.aclose()
    owned = TmdbClient(api_key="k")
    await owned.aclose()
    assert owned._http.is_closed


async def test_stats_are_json_ready() -> None:
    client, _ = make_client(Upstream())
    await client.get_movie(1)
    await client.get_movie(1)
    data = client.stats().as_dict()
    json.dumps(data)
    assert data["requests"] == 2
    assert data["cache_hits"] == 1
    assert data["upstream_calls"] == 1
    assert data["latency_p50_ms"] >= 0


# --- end to end against FakeTmdb ---------------------------------------------------------


async def test_end_to_end_over_a_real_socket() -> None:
    from seerrperf.testing import FakeTmdb

    fake = FakeTmdb(api_key=SENTINEL)
    async with fake.serve() as base_url, TmdbClient(api_key=SENTINEL, base_url=base_url) as tmdb:
        matrix = await tmdb.get_movie(603, append_to_response=["credits"])
        assert matrix["title"] == "The Matrix"
        got = await tmdb.get_tv(1399)
        assert got["name"] == "Game of Thrones"
        results = await tmdb.search_multi("matrix")
        assert "results" in results
        languages = await tmdb.get_languages()
        assert isinstance(languages["results"], list)
        movies = await tmdb.get_movies([603, 604, 603])
        assert [m["id"] if m else None for m in movies] == [603, 604, 603]
        with pytest.raises(TmdbNotFound):
            await tmdb.get_movie(fake.max_id + 1)
        await tmdb.get_movie(604)
        # 603 twice: with and without append_to_response are different resources.
        assert fake.stats().requests_by_path["/3/movie/603"] == 2
        assert fake.stats().requests_by_path["/3/movie/604"] == 1  # cached


async def test_fake_outage_and_wrong_key_through_the_client() -> None:
    from seerrperf.testing import FakeTmdb

    fake = FakeTmdb(api_key="right")
    async with TmdbClient(
        api_key="wrong", http_client=httpx.AsyncClient(transport=fake.transport())
    ) as tmdb:
        with pytest.raises(TmdbAuthError):
            await tmdb.get_movie(603)
    time = FakeTime()
    async with TmdbClient(
        api_key="right",
        http_client=httpx.AsyncClient(transport=fake.transport()),
        cache=NamedCache("tmdb", clock=time),
        sleep=time.sleep,
        clock=time,
        max_retries=2,
    ) as tmdb:
        fresh = await tmdb.get_movie(603)
        fake.outage = True
        time.now += 12 * 3600  # past TTL and SWR, inside stale-if-error
        assert await tmdb.get_movie(603) == fresh
        with pytest.raises(TmdbUnavailable):
            await tmdb.get_movie(604)


async def test_parameter_values_cannot_pose_as_other_parameters() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"asked": dict(r.url.params)}))
    client, _ = make_client(upstream)
    first = await client.get("/search/movie", {"query": "a&year=1999"})
    second = await client.get("/search/movie", {"query": "a", "year": 1999})
    assert upstream.total == 2
    assert first["asked"]["query"] == "a&year=1999"
    assert second["asked"]["year"] == "1999"


async def test_percent_encoded_keys_are_masked_in_httpx_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    key = f"{SENTINEL}+/x y"
    upstream = Upstream()
    client, _ = make_client(upstream, api_key=key)
    await client.get_movie(1)
    assert "HTTP Request" in caplog.text
    assert SENTINEL not in caplog.text
    for form in (key, "s3cr3t-sentinel%2B", "sentinel+%2F"):
        assert form not in caplog.text


async def test_dropped_clients_leave_no_log_filter_behind() -> None:
    import gc

    from seerrperf._tmdb.client import _LOG_FILTER

    before = len(logging.getLogger("httpx").filters)
    for _ in range(50):
        make_client(Upstream())
    gc.collect()
    assert len(logging.getLogger("httpx").filters) <= max(before, 1)
    assert len(_LOG_FILTER._clients) <= 1


async def test_a_closed_client_refuses_upstream_calls() -> None:
    client, _ = make_client(Upstream())
    await client.aclose()
    with pytest.raises(Exception, match="closed"):
        await client.get_movie(1)


async def test_a_title_deleted_during_a_background_refresh_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime()
    exists = True
    upstream = Upstream(
        lambda r: httpx.Response(200, json={"id": 1}) if exists else httpx.Response(404)
    )
    client, _ = make_client(upstream, time)
    await client.get_movie(1)
    exists = False
    time.now += 6 * 3600 + 10  # stale, inside the stale-while-revalidate window
    assert await client.get_movie(1) == {"id": 1}  # served stale; the refresh gets 404
    await anyio.wait_all_tasks_blocked()
    assert "failed (TmdbNotFound); the entry was removed" in caplog.text
    with pytest.raises(TmdbNotFound):
        await client.get_movie(1)  # not served stale again
