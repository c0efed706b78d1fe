"""AsyncTmdbClient: cache orchestration and endpoints, through httpx.MockTransport and FakeTmdb."""

from __future__ import annotations

import gc
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from seerrperf import (
    AsyncTmdbClient,
    ConfigurationError,
    NamedCache,
    TmdbAuthError,
    TmdbNotFound,
    TmdbUnavailable,
    TtlPolicy,
)
from seerrperf.testing import FakeClock, FakeTmdb
from tests._support import SENTINEL

from ._upstream import Sleeps, Upstream

_T = TypeVar("_T")

HOUR = 3600


class KeyRecordingCache(NamedCache):
    """A ``tmdb`` cache that records every key the client uses."""

    def __init__(self) -> None:
        super().__init__("tmdb")
        self.keys: list[object] = []

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        self.keys.append(key)
        super().set(key, value, ttl)

    def __contains__(self, key: object) -> bool:
        self.keys.append(key)
        return super().__contains__(key)

    async def aget_or_set(
        self,
        key: Hashable,
        loader: Callable[[], Awaitable[_T]],
        ttl: float | None = None,
        *,
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
        load_timeout: float | None = None,
    ) -> _T:
        self.keys.append(key)
        return await super().aget_or_set(
            key,
            loader,
            ttl,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            load_timeout=load_timeout,
        )


def make_client(
    upstream: Upstream,
    clock: FakeClock | None = None,
    *,
    sleep: Sleeps | None = None,
    **kwargs: Any,
) -> AsyncTmdbClient:
    """A client on ``upstream`` whose retries, limiter and default cache run on ``clock``."""
    clock = clock or FakeClock(1000)
    kwargs.setdefault("api_key", SENTINEL)
    return AsyncTmdbClient(
        http_client=upstream.http(),
        sleep=sleep or Sleeps(clock),
        clock=clock,
        base_url="https://tmdb.test/3",
        **kwargs,
    )


pytestmark = pytest.mark.anyio


async def test_concurrent_identical_requests_share_one_upstream_call() -> None:
    upstream = Upstream()
    upstream.gate = anyio.Event()
    client = make_client(upstream)
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
        (TtlPolicy.by_volatility(), "movie", 6 * HOUR),
        (TtlPolicy.by_volatility(), "tv", 2 * HOUR),
        (TtlPolicy.seerr(), "movie", 12 * HOUR),
        (TtlPolicy.seerr(), "tv", 12 * HOUR),
        (TtlPolicy.by_volatility(), "configuration", 24 * HOUR),
        (TtlPolicy.by_volatility(), "keyword", 7 * 24 * HOUR),
        (TtlPolicy.seerr(), "keyword_movies", 300),
        (TtlPolicy.by_volatility().with_overrides({"movie": 1.5}), "movie", 1.5),
    ],
)
async def test_tier_ttls_are_applied(policy: TtlPolicy, path_call: str, ttl: float) -> None:
    clock = FakeClock(1000)
    upstream = Upstream(lambda r: httpx.Response(200, json={"ok": True}))
    client = make_client(upstream, clock, ttl_policy=policy)
    calls: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "movie": lambda: client.get_movie(603),
        "tv": lambda: client.get_tv(1399),
        "configuration": client.get_configuration,
        "keyword": lambda: client.get_keyword(180547),
        "keyword_movies": lambda: client.get("/keyword/180547/movies"),
    }
    call = calls[path_call]
    await call()
    clock.advance(ttl * 0.99)
    await call()
    assert upstream.total == 1  # still fresh just before expiry
    clock.advance(ttl * 0.01 + ttl)  # past the stale-while-revalidate window too
    await call()
    assert upstream.total == 2


async def test_a_per_call_ttl_may_be_fractional_and_zero_neither_caches_nor_coalesces() -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    client = make_client(upstream, clock)
    await client.get("/movie/603/credits", ttl=1.5)
    clock.advance(1.4)
    await client.get("/movie/603/credits", ttl=1.5)
    assert upstream.total == 1
    await client.get("/movie/603/credits", ttl=0)
    await client.get("/movie/603/credits", ttl=0)
    assert upstream.total == 3


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once() -> None:
    clock = FakeClock(1000)
    version = 1
    upstream = Upstream(lambda r: httpx.Response(200, json={"version": version}))
    client = make_client(upstream, clock)
    assert (await client.get_movie(1))["version"] == 1
    version = 2
    upstream.gate = anyio.Event()
    clock.advance(6 * HOUR + 10)  # expired, inside the SWR window (half the TTL)
    with anyio.fail_after(10):
        answers = [(await client.get_movie(1))["version"] for _ in range(20)]
        assert answers == [1] * 20  # stale, at once, although upstream is blocked
        upstream.gate.set()
        await anyio.wait_all_tasks_blocked()  # the single background refresh finishes
    assert upstream.total == 2
    assert (await client.get_movie(1))["version"] == 2
    assert client.stats().stale_served == 20


async def test_outage_serves_stale_inside_the_window_and_fails_outside() -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    client = make_client(upstream, clock, max_retries=1)
    movie = await client.get_movie(1)
    upstream.failing = 503
    clock.advance(6 * HOUR + 3 * HOUR + 60)  # past TTL and SWR window, inside stale-if-error
    assert await client.get_movie(1) == movie
    clock.advance(24 * HOUR)  # past stale-if-error
    with pytest.raises(TmdbUnavailable) as info:
        await client.get_movie(1)
    assert info.value.status == 503
    assert info.value.path == "/movie/1"


async def test_404_is_remembered_briefly() -> None:
    clock = FakeClock(1000)
    upstream = Upstream(lambda r: httpx.Response(404, json={"status_code": 34}))
    client = make_client(upstream, clock)
    for _ in range(3):
        with pytest.raises(TmdbNotFound):
            await client.get_movie(404404)
    assert upstream.total == 1
    assert client.stats().not_found_cached == 2
    clock.advance(61)
    with pytest.raises(TmdbNotFound):
        await client.get_movie(404404)
    assert upstream.total == 2


async def test_a_deleted_title_is_not_served_stale() -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    client = make_client(upstream, clock)
    await client.get_movie(1)
    upstream.failing = 404
    clock.advance(6 * HOUR + 3 * HOUR + 60)  # only stale-if-error could serve it now
    with pytest.raises(TmdbNotFound):
        await client.get_movie(1)


async def test_a_title_deleted_during_a_background_refresh_is_replaced_by_the_404(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    client = make_client(upstream, clock)
    movie = await client.get_movie(1)
    upstream.failing = 404
    clock.advance(6 * HOUR + 10)  # stale, inside the stale-while-revalidate window
    assert await client.get_movie(1) == movie  # served stale; the refresh gets 404
    await anyio.wait_all_tasks_blocked()
    assert "failed" not in caplog.text  # a 404 is an answer, not a failed refresh
    for _ in range(3):
        with pytest.raises(TmdbNotFound):
            await client.get_movie(1)  # not served stale again: the marker replaced it
    assert upstream.total == 2


async def test_responses_are_parsed_by_the_transport() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json=[{"iso_639_1": "en"}]))
    client = make_client(upstream)
    assert await client.get_languages() == {"results": [{"iso_639_1": "en"}]}


async def test_batch_forms_are_aligned_and_isolate_failures() -> None:
    upstream = Upstream(
        lambda r: httpx.Response(404) if r.url.path.endswith("/2") else Upstream.movie(r)
    )
    client = make_client(upstream)
    movies = await client.get_movies([3, 2, 1, 3])
    assert [m["id"] if m else None for m in movies] == [3, None, 1, 3]
    assert upstream.calls["/3/movie/3"] == 1
    shows = await client.get_tvs([7])
    assert shows[0] is not None


async def test_parameters_are_normalised_in_one_cache_key() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"page": 1, "results": []}))
    client = make_client(upstream, language="en-US")
    await client.discover_movies(with_genres="28", page=1, sort_by="popularity.desc")
    await client.discover_movies(sort_by="popularity.desc", page=1, with_genres="28")
    assert upstream.total == 1
    request = upstream.requests[0]
    assert request.url.params["language"] == "en-US"
    assert request.url.params["api_key"] == SENTINEL  # sent, but never cached under
    assert client.cache.stats().keys == 1


async def test_parameter_values_cannot_pose_as_other_parameters() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"asked": dict(r.url.params)}))
    client = make_client(upstream)
    first = await client.get("/search/movie", {"query": "a&year=1999"})
    second = await client.get("/search/movie", {"query": "a", "year": 1999})
    assert upstream.total == 2
    assert first["asked"]["query"] == "a&year=1999"
    assert second["asked"]["year"] == "1999"


async def test_the_client_defaults_reach_the_endpoints_that_take_them() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"asked": dict(r.url.params)}))
    client = make_client(upstream, language="fr", region="FR")
    movie = await client.search_movie("amelie", page=2)
    tv = await client.search_tv("amelie")
    discover = await client.discover_movies(page=3, region="BE")
    assert movie["asked"] == {
        "query": "amelie",
        "page": "2",
        "include_adult": "false",
        "region": "FR",
        "language": "fr",
        "api_key": SENTINEL,
    }
    assert "region" not in tv["asked"]
    assert discover["asked"]["region"] == "BE"  # an explicit filter wins


async def test_secrets_never_leak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = Upstream(lambda r: httpx.Response(500, text=f"echo {r.url}"))
    cache = KeyRecordingCache()
    client = make_client(upstream, max_retries=1, max_rps=None, cache=cache)
    with pytest.raises(TmdbUnavailable) as info:
        await client.get_movie(1)
    missing = KeyRecordingCache()
    gone = make_client(Upstream(lambda r: httpx.Response(404)), cache=missing)
    with pytest.raises(TmdbNotFound):
        await gone.get_movie(2)
    ok = KeyRecordingCache()
    await make_client(Upstream(), cache=ok).get_movie(3)
    assert ("/movie/1", ()) in cache.keys
    assert ("/movie/2", ()) in missing.keys  # the 404 lives under the request's own key
    assert ("/movie/3", ()) in ok.keys
    texts = [str(info.value), repr(info.value), repr(client), caplog.text]
    texts += [repr(key) for key in cache.keys + missing.keys + ok.keys]
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
        lambda c: c.get("/movie/603", ttl=float("inf")),
        lambda c: c.get("/movie/603", ttl="60"),
        lambda c: c.get_movie(603, append_to_response=["credits;drop"]),
        lambda c: c.get_watch_providers("movie", region="usa"),
        lambda c: c.get_movies([1, "2"]),
    ],
)
async def test_bad_input_is_rejected_before_any_request(
    call: Callable[[AsyncTmdbClient], Any],
) -> None:
    upstream = Upstream()
    client = make_client(upstream)
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
        ({"api_key": "a", "cache": {}}, "cache must be a NamedCache"),
        ({"api_key": "a", "ttl_policy": "seerr"}, "ttl_policy must be a TtlPolicy"),
        ({"api_key": "a", "http_client": "https://tmdb.test"}, "http_client"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        AsyncTmdbClient(**kwargs)


async def test_injected_http_client_is_not_closed_but_an_owned_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http = Upstream().http()
    async with AsyncTmdbClient(api_key="k", http_client=http) as client:
        await client.get_movie(1)
    assert not http.is_closed
    await http.aclose()
    closed: list[httpx.AsyncClient] = []
    original = httpx.AsyncClient.aclose

    async def spy(self: httpx.AsyncClient) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(httpx.AsyncClient, "aclose", spy)
    owned = AsyncTmdbClient(api_key="k")
    await owned.aclose()
    await owned.aclose()  # a second close is a no-op
    assert len(closed) == 1
    assert closed[0].is_closed


async def test_a_closed_client_refuses_calls() -> None:
    upstream = Upstream()
    client = make_client(upstream)
    await client.aclose()
    with pytest.raises(Exception, match="closed"):
        await client.get_movie(1)
    assert upstream.total == 0


async def test_dropped_clients_leave_nothing_behind() -> None:
    before = len(logging.getLogger("httpx").filters)
    refs = [weakref.ref(make_client(Upstream())) for _ in range(50)]
    gc.collect()
    assert all(ref() is None for ref in refs)  # the log filter holds nothing strongly
    assert len(logging.getLogger("httpx").filters) <= max(before, 1)


async def test_stats_are_json_ready() -> None:
    client = make_client(Upstream())
    await client.get_movie(1)
    await client.get_movie(1)
    data = client.stats().as_dict()
    json.dumps(data)
    assert data["requests"] == 2
    assert data["cache_hits"] == 1
    assert data["upstream_calls"] == 1
    assert data["latency_p50_ms"] >= 0
    assert data["latency_p95_ms"] >= data["latency_p50_ms"]


def test_the_repr_names_the_root_and_hides_the_secret() -> None:
    client = AsyncTmdbClient(access_token=SENTINEL, http_client=Upstream().http())
    assert repr(client) == "<AsyncTmdbClient https://api.themoviedb.org/3 access_token=***>"


# --- end to end against FakeTmdb ---------------------------------------------------------


async def test_end_to_end_over_a_real_socket() -> None:
    fake = FakeTmdb(api_key=SENTINEL)
    async with (
        fake.serve() as base_url,
        AsyncTmdbClient(api_key=SENTINEL, base_url=base_url) as tmdb,
    ):
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


async def test_every_endpoint_reaches_fake_tmdb() -> None:
    fake = FakeTmdb(api_key=SENTINEL)
    http = httpx.AsyncClient(transport=fake.transport())
    async with AsyncTmdbClient(api_key=SENTINEL, http_client=http) as tmdb:
        calls: list[Callable[[], Awaitable[dict[str, Any]]]] = [
            lambda: tmdb.get_movie(603),
            lambda: tmdb.get_tv(1399),
            lambda: tmdb.get_tv_season(1399, 1),
            lambda: tmdb.get_person(6384),
            lambda: tmdb.get_collection(2344),
            lambda: tmdb.search_multi("matrix"),
            lambda: tmdb.search_movie("matrix"),
            lambda: tmdb.search_tv("thrones"),
            lambda: tmdb.discover_movies(with_genres="28"),
            lambda: tmdb.discover_tv(page=2),
            lambda: tmdb.trending("movie", "week"),
            tmdb.get_configuration,
            tmdb.get_languages,
            tmdb.get_countries,
            lambda: tmdb.get_genres("tv"),
            lambda: tmdb.get_watch_providers("movie", region="US"),
            tmdb.get_watch_provider_regions,
            lambda: tmdb.get_keyword(180547),
            lambda: tmdb.get_certifications("movie"),
            lambda: tmdb.find("tt0133093", "imdb_id"),
        ]
        for call in calls:
            assert isinstance(await call(), dict)
        statuses = fake.stats().responses_by_status
    await http.aclose()
    assert statuses == {200: len(calls)}


async def test_fake_outage_and_wrong_key_through_the_client() -> None:
    fake = FakeTmdb(api_key="right")
    async with AsyncTmdbClient(
        api_key="wrong", http_client=httpx.AsyncClient(transport=fake.transport())
    ) as tmdb:
        with pytest.raises(TmdbAuthError):
            await tmdb.get_movie(603)
    clock = FakeClock(1000)
    async with AsyncTmdbClient(
        api_key="right",
        http_client=httpx.AsyncClient(transport=fake.transport()),
        sleep=Sleeps(clock),
        clock=clock,
        max_retries=2,
    ) as tmdb:
        fresh = await tmdb.get_movie(603)
        fake.outage = True
        clock.advance(12 * HOUR)  # past TTL and SWR, inside stale-if-error
        assert await tmdb.get_movie(603) == fresh
        with pytest.raises(TmdbUnavailable):
            await tmdb.get_movie(604)
