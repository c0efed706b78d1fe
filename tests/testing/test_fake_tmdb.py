"""FakeTmdb: JSON shapes, determinism, failure knobs, counters and the real server."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given, settings
from hypothesis import strategies as st

from seerrperf import ConfigurationError
from seerrperf.testing import FakeTmdb
from tests._support import SENTINEL

API = "https://api.themoviedb.org/3"
NOT_FOUND = {
    "success": False,
    "status_code": 34,
    "status_message": "The resource you requested could not be found.",
}
IMAGE_PATH = re.compile(r"/[A-Za-z0-9]{27}\.(jpg|png)")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BOTH_BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@contextlib.asynccontextmanager
async def client(fake: FakeTmdb, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake.transport(), base_url=API, **kwargs) as http:
        yield http


async def get(fake: FakeTmdb, path: str, **params: Any) -> tuple[int, Any]:
    async with client(fake) as http:
        response = await http.get(path, params=params)
    return response.status_code, response.json()


def run_get(fake: FakeTmdb, path: str, **params: Any) -> tuple[int, Any]:
    """``get`` from synchronous hypothesis tests."""

    async def main() -> tuple[int, Any]:
        return await get(fake, path, **params)

    return anyio.run(main)


class GatedSleep:
    """A sleep that records delays and holds every caller until released."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.delays: list[float] = []
        self.all_waiting = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == self.expected:
            self.all_waiting.set()
        await self.release.wait()


async def record_sleep_into(delays: list[float], delay: float) -> None:
    delays.append(delay)


# ---------------------------------------------------------------- shapes


@pytest.mark.anyio
async def test_movie_has_tmdb_shape_and_real_title_for_603() -> None:
    status, movie = await get(FakeTmdb(), "/movie/603")
    assert status == 200
    assert movie["id"] == 603
    assert movie["title"] == movie["original_title"] == "The Matrix"
    assert movie["imdb_id"] == "tt0133093"
    assert movie["release_date"] == "1999-03-31"
    assert movie["genres"] == [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}]
    assert movie["belongs_to_collection"]["id"] == 2344
    assert IMAGE_PATH.fullmatch(movie["poster_path"])
    assert IMAGE_PATH.fullmatch(movie["backdrop_path"])
    for key in ("budget", "revenue", "runtime", "vote_count"):
        assert isinstance(movie[key], int)
    assert 0 <= movie["vote_average"] <= 10
    assert movie["spoken_languages"][0].keys() == {"english_name", "iso_639_1", "name"}
    assert movie["production_companies"][0].keys() == {"id", "logo_path", "name", "origin_country"}
    assert not {"credits", "images", "external_ids"} & movie.keys()


@pytest.mark.anyio
async def test_movie_honours_append_to_response() -> None:
    status, movie = await get(
        FakeTmdb(), "/movie/603", append_to_response="images,external_ids,credits,videos"
    )
    assert status == 200
    assert movie["external_ids"]["imdb_id"] == "tt0133093"
    cast = movie["credits"]["cast"]
    assert [member["name"] for member in cast][:1] == ["Keanu Reeves"]
    assert [member["order"] for member in cast] == list(range(len(cast)))
    assert all({"character", "cast_id", "credit_id", "profile_path"} <= m.keys() for m in cast)
    assert {member["job"] for member in movie["credits"]["crew"]} == {"Director"}
    assert movie["images"]["posters"][0]["file_path"] == movie["poster_path"]
    assert movie["images"]["backdrops"][0]["file_path"] == movie["backdrop_path"]
    assert "videos" not in movie  # unknown parts are ignored, as TMDB does


@pytest.mark.anyio
async def test_tv_and_its_seasons_agree() -> None:
    fake = FakeTmdb()
    status, show = await get(fake, "/tv/1399", append_to_response="external_ids,credits")
    assert status == 200
    assert show["name"] == "Game of Thrones"
    assert show["number_of_seasons"] == len(show["seasons"]) == 8
    assert show["number_of_episodes"] == 73
    assert show["status"] == "Ended"
    assert show["external_ids"]["tvdb_id"] == 121361
    assert show["networks"][0]["name"] == "HBO"
    assert "cast_id" not in show["credits"]["cast"][0]
    for tv_id in (1399, 4242):
        _, show = await get(fake, f"/tv/{tv_id}")
        for summary in show["seasons"]:
            status, season = await get(fake, f"/tv/{tv_id}/season/{summary['season_number']}")
            assert status == 200
            assert len(season["episodes"]) == summary["episode_count"]
            assert season["air_date"] == summary["air_date"] == season["episodes"][0]["air_date"]
            assert [e["episode_number"] for e in season["episodes"]][:2] == [1, 2]
            assert season["episodes"][-1]["episode_type"] == "finale"
        assert show["last_episode_to_air"] == {
            key: value
            for key, value in season["episodes"][-1].items()
            if key not in ("crew", "guest_stars")
        }
        assert show["last_air_date"] == show["last_episode_to_air"]["air_date"]
        status, body = await get(fake, f"/tv/{tv_id}/season/{len(show['seasons']) + 1}")
        assert (status, body) == (404, NOT_FOUND)


@pytest.mark.anyio
async def test_person_collection_and_keyword() -> None:
    fake = FakeTmdb()
    status, person = await get(fake, "/person/6384")
    assert status == 200
    assert (person["name"], person["imdb_id"], person["gender"]) == ("Keanu Reeves", "nm0000206", 2)
    assert DATE.fullmatch(person["birthday"])
    _, collection = await get(fake, "/collection/2344")
    assert collection["name"] == "The Matrix Collection"
    assert [part["id"] for part in collection["parts"]] == [603, 604, 605, 624860]
    assert collection["parts"][0]["title"] == "The Matrix"
    assert all(part["media_type"] == "movie" for part in collection["parts"])
    _, generated = await get(fake, "/collection/77")
    assert generated["name"].endswith(" Collection")
    assert 2 <= len(generated["parts"]) <= 4
    status, keyword = await get(fake, "/keyword/9882")
    assert status == 200
    assert keyword["id"] == 9882
    assert isinstance(keyword["name"], str)


@pytest.mark.anyio
async def test_search_pages_like_tmdb() -> None:
    fake = FakeTmdb()
    _, first = await get(fake, "/search/movie", query="Matrix")
    assert first["page"] == 1
    assert [r["id"] for r in first["results"][:4]] == [603, 604, 605, 624860]
    total = first["total_results"]
    assert first["total_pages"] == math.ceil(total / 20)
    assert len(first["results"]) == min(20, total)
    assert all(
        {"title", "release_date", "genre_ids", "poster_path"} <= r.keys() for r in first["results"]
    )
    last_page = first["total_pages"]
    _, last = await get(fake, "/search/movie", query="Matrix", page=last_page)
    assert len(last["results"]) == total - 20 * (last_page - 1)
    _, beyond = await get(fake, "/search/movie", query="Matrix", page=last_page + 1)
    assert (beyond["results"], beyond["total_results"]) == ([], total)
    _, shows = await get(fake, "/search/tv", query="thrones")
    assert shows["results"][0]["name"] == "Game of Thrones"
    assert all("first_air_date" in r and "title" not in r for r in shows["results"])
    _, multi = await get(fake, "/search/multi", query="keanu")
    assert multi["results"][0]["name"] == "Keanu Reeves"
    assert {r["media_type"] for r in multi["results"]} <= {"movie", "tv", "person"}
    person = multi["results"][0]
    assert person["media_type"] == "person"
    assert len(person["known_for"]) == 3
    _, empty = await get(fake, "/search/movie", query="  ")
    assert empty == {"page": 1, "results": [], "total_pages": 1, "total_results": 0}


@pytest.mark.anyio
@pytest.mark.parametrize("page", ["0", "501", "two", ""])
async def test_invalid_page_is_tmdb_400(page: str) -> None:
    status, body = await get(FakeTmdb(), "/search/movie", query="x", page=page)
    assert status == 400
    assert body["status_code"] == 22


@pytest.mark.anyio
async def test_discover_depends_on_filters_not_their_order() -> None:
    fake = FakeTmdb()
    _, one = await get(fake, "/discover/movie", with_genres="28", sort_by="popularity.desc")
    async with client(fake) as http:
        response = await http.get("/discover/movie?sort_by=popularity.desc&with_genres=28")
    assert response.json() == one
    _, other = await get(fake, "/discover/movie", with_genres="35", sort_by="popularity.desc")
    assert other["results"] != one["results"]
    _, shows = await get(fake, "/discover/tv", page=3)
    assert shows["page"] == 3
    assert all("name" in r and "media_type" not in r for r in shows["results"])


@pytest.mark.anyio
@pytest.mark.parametrize("media_type", ["all", "movie", "tv", "person"])
@pytest.mark.parametrize("window", ["day", "week"])
async def test_trending(media_type: str, window: str) -> None:
    status, body = await get(FakeTmdb(), f"/trending/{media_type}/{window}")
    assert status == 200
    assert len(body["results"]) == 20
    kinds = {r["media_type"] for r in body["results"]}
    if media_type == "all":
        assert kinds <= {"movie", "tv"}
    else:
        assert kinds == {media_type}


@pytest.mark.anyio
async def test_configuration_and_reference_lists() -> None:
    fake = FakeTmdb()
    _, config = await get(fake, "/configuration")
    assert config["images"]["secure_base_url"] == "https://image.tmdb.org/t/p/"
    assert "w500" in config["images"]["poster_sizes"]
    _, languages = await get(fake, "/configuration/languages")
    assert {"iso_639_1": "en", "english_name": "English", "name": "English"} in languages
    _, countries = await get(fake, "/configuration/countries")
    assert countries[0].keys() == {"iso_3166_1", "english_name", "native_name"}
    _, genres = await get(fake, "/genre/movie/list")
    assert {"id": 878, "name": "Science Fiction"} in genres["genres"]
    _, tv_genres = await get(fake, "/genre/tv/list")
    assert {"id": 10765, "name": "Sci-Fi & Fantasy"} in tv_genres["genres"]
    _, regions = await get(fake, "/watch/providers/regions")
    assert [r["iso_3166_1"] for r in regions["results"]] == [c["iso_3166_1"] for c in countries]
    _, certifications = await get(fake, "/certification/movie/list")
    assert [c["certification"] for c in certifications["certifications"]["US"]][:3] == [
        "NR",
        "G",
        "PG",
    ]
    _, tv_certifications = await get(fake, "/certification/tv/list")
    assert "TV-MA" in {c["certification"] for c in tv_certifications["certifications"]["US"]}


@pytest.mark.anyio
async def test_watch_providers_filter_by_region() -> None:
    fake = FakeTmdb()
    _, everywhere = await get(fake, "/watch/providers/movie")
    _, german = await get(fake, "/watch/providers/movie", watch_region="DE")
    assert 0 < len(german["results"]) < len(everywhere["results"])
    for provider in german["results"]:
        assert provider["display_priority"] == provider["display_priorities"]["DE"]
        assert provider.keys() == {
            "display_priorities",
            "display_priority",
            "logo_path",
            "provider_name",
            "provider_id",
        }
    _, nowhere = await get(fake, "/watch/providers/tv", watch_region="ZZ")
    assert nowhere == {"results": []}


@pytest.mark.anyio
async def test_find_resolves_known_and_generated_external_ids() -> None:
    fake = FakeTmdb()
    _, found = await get(fake, "/find/tt0133093", external_source="imdb_id")
    assert [m["id"] for m in found["movie_results"]] == [603]
    assert found.keys() == {
        "movie_results",
        "person_results",
        "tv_results",
        "tv_episode_results",
        "tv_season_results",
    }
    _, found = await get(fake, "/find/121361", external_source="tvdb_id")
    assert [t["name"] for t in found["tv_results"]] == ["Game of Thrones"]
    _, movie = await get(fake, "/movie/42")
    _, found = await get(fake, f"/find/{movie['imdb_id']}", external_source="imdb_id")
    assert [m["id"] for m in found["movie_results"]] == [42]
    _, show = await get(fake, "/tv/42", append_to_response="external_ids")
    tvdb_id = show["external_ids"]["tvdb_id"]
    _, found = await get(fake, f"/find/{tvdb_id}", external_source="tvdb_id")
    assert [t["id"] for t in found["tv_results"]] == [42]
    # 603's generated-style id is not an alias of the real one.
    _, found = await get(fake, "/find/tt80000603", external_source="imdb_id")
    assert found["movie_results"] == []
    status, body = await get(fake, "/find/tt0133093")
    assert (status, body["status_code"]) == (422, 5)


# ---------------------------------------------------------------- determinism


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(["movie", "tv", "person", "collection", "keyword"]),
    id_=st.integers(1, 1_000_000),
    seeds=st.tuples(st.integers(), st.integers()),
)
def test_same_id_gives_same_json_in_every_instance(
    kind: str, id_: int, seeds: tuple[int, int]
) -> None:
    first = run_get(FakeTmdb(seed=seeds[0]), f"/{kind}/{id_}")
    second = run_get(FakeTmdb(seed=seeds[1], latency=0.0, error_rate=0.0), f"/{kind}/{id_}")
    assert first == second
    status, body = first
    assert status == 200
    assert body["id"] == id_
    title = body.get("title") or body.get("name")
    assert isinstance(title, str)
    assert title
    for key in ("poster_path", "profile_path", "backdrop_path"):
        if key in body:
            assert IMAGE_PATH.fullmatch(body[key])
    for key in ("release_date", "first_air_date", "birthday"):
        if key in body:
            assert DATE.fullmatch(body[key])
    if "vote_average" in body:
        assert 0 <= body["vote_average"] <= 10


@pytest.mark.anyio
async def test_json_does_not_change_between_releases() -> None:
    # Users pin generated values in their own tests; changing them is a breaking change.
    fake = FakeTmdb()
    _, movie = await get(fake, "/movie/550")
    assert (movie["title"], movie["release_date"], movie["poster_path"]) == (
        "Northern Crown",
        "2010-01-10",
        "/wv7fcEylNFWv3fAKRZB4MVBiOBR.jpg",
    )
    assert [genre["name"] for genre in movie["genres"]] == ["Animation", "War"]
    _, show = await get(fake, "/tv/550")
    assert (show["name"], show["first_air_date"], show["number_of_episodes"]) == (
        "Glass Cipher",
        "1997-09-30",
        88,
    )


# ---------------------------------------------------------------- 404 and 401


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        "/movie/101",
        "/movie/0",
        "/tv/7",
        "/person/7",
        "/movie/603abc",
        "/movie/603%2F..%2Fx",
        "/movie/",
        "/tv/7/season/1",
        "/unknown",
        "/trending/all/month",
    ],
)
async def test_missing_things_are_tmdb_404(path: str) -> None:
    async with client(FakeTmdb(max_id=100, deleted_ids={7})) as http:
        response = await http.get(path)
    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert response.headers["content-type"] == "application/json;charset=utf-8"


@pytest.mark.anyio
async def test_deleted_ids_change_at_runtime() -> None:
    fake = FakeTmdb()
    assert (await get(fake, "/movie/603"))[0] == 200
    fake.deleted_ids = fake.deleted_ids | {603}
    assert await get(fake, "/movie/603") == (404, NOT_FOUND)
    _, found = await get(fake, "/find/tt0133093", external_source="imdb_id")
    assert found["movie_results"] == []
    fake.deleted_ids = set()
    assert (await get(fake, "/movie/603"))[0] == 200


@pytest.mark.anyio
async def test_api_key_is_required_when_set() -> None:
    fake = FakeTmdb(api_key=SENTINEL)
    for params in ({}, {"api_key": "wrong"}, {"api_key": ""}):
        status, body = await get(fake, "/movie/603", **params)
        assert status == 401
        assert body == {
            "success": False,
            "status_code": 7,
            "status_message": "Invalid API key: You must be granted a valid key.",
        }
    assert (await get(fake, "/movie/603", api_key=SENTINEL))[0] == 200
    async with client(fake) as http:
        image = await http.get("https://image.tmdb.org/t/p/w92/poster.jpg")
    assert image.status_code == 200  # the image CDN needs no key
    assert SENTINEL not in repr(fake)


@pytest.mark.anyio
async def test_bearer_token_is_required_when_set() -> None:
    fake = FakeTmdb(access_token=SENTINEL, api_key="other-key")
    for authorization, expected in [
        (f"Bearer {SENTINEL}", 200),
        (f"bearer {SENTINEL}", 200),
        ("Bearer wrong", 401),
        (f"Basic {SENTINEL}", 401),
        ("", 401),
    ]:
        async with client(fake, headers={"Authorization": authorization}) as http:
            response = await http.get("/movie/603")
        assert response.status_code == expected, authorization
    assert (await get(fake, "/movie/603", api_key="other-key"))[0] == 200
    assert SENTINEL not in repr(fake)


# ---------------------------------------------------------------- failure knobs


@pytest.mark.anyio
async def test_429_burst_with_retry_after() -> None:
    fake = FakeTmdb(throttle=2, retry_after=3)
    async with client(fake) as http:
        statuses = []
        for _ in range(3):
            response = await http.get("/movie/603")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["retry-after"] == "3"
                assert response.json()["status_code"] == 25
        assert statuses == [429, 429, 200]
        assert fake.throttle == 0
        fake.throttle, fake.retry_after = 1, 7
        response = await http.get("/configuration")
        assert (response.status_code, response.headers["retry-after"]) == (429, "7")
        assert (await http.get("/configuration")).status_code == 200


@pytest.mark.anyio
async def test_outage_answers_503_to_everything_until_switched_off() -> None:
    fake = FakeTmdb(outage=True)
    async with client(fake) as http:
        for url in ("/movie/603", "/configuration", "https://image.tmdb.org/t/p/w92/a.jpg"):
            response = await http.get(url)
            assert response.status_code == 503
            assert response.json()["status_code"] == 9
        fake.outage = False
        assert (await http.get("/movie/603")).status_code == 200


async def statuses(fake: FakeTmdb, count: int) -> list[int]:
    async with client(fake) as http:
        return [(await http.get(f"/movie/{i + 1}")).status_code for i in range(count)]


@pytest.mark.anyio
async def test_error_rate_is_reproducible_with_a_seed() -> None:
    first = await statuses(FakeTmdb(error_rate=0.3, seed=7), 100)
    assert first == await statuses(FakeTmdb(error_rate=0.3, seed=7), 100)
    assert first != await statuses(FakeTmdb(error_rate=0.3, seed=8), 100)
    assert set(first) == {200, 500}
    assert 15 <= first.count(500) <= 45
    assert set(await statuses(FakeTmdb(error_rate=1.0), 10)) == {500}
    assert set(await statuses(FakeTmdb(error_rate=0.0), 10)) == {200}


@pytest.mark.anyio
async def test_error_body_is_tmdb_internal_error() -> None:
    status, body = await get(FakeTmdb(error_rate=1.0), "/movie/603")
    assert (status, body["status_code"], body["success"]) == (500, 11, False)


@pytest.mark.anyio
async def test_latency_and_seeded_jitter_use_the_injected_sleep() -> None:
    runs = []
    for _ in range(2):
        delays: list[float] = []
        fake = FakeTmdb(
            latency=0.25, jitter=0.1, seed=3, sleep=lambda d, out=delays: record_sleep_into(out, d)
        )
        await statuses(fake, 20)
        runs.append(delays)
    assert runs[0] == runs[1]
    assert len(runs[0]) == 20
    assert all(0.25 <= delay <= 0.35 for delay in runs[0])
    assert len(set(runs[0])) > 1
    delays = []
    fake = FakeTmdb(latency=0.0, sleep=lambda d: record_sleep_into(delays, d))
    await statuses(fake, 3)
    assert delays == []  # no latency, no sleep call


@pytest.mark.anyio
@BOTH_BACKENDS
async def test_latency_overlaps_for_concurrent_requests() -> None:
    sleep = GatedSleep(expected=10)
    fake = FakeTmdb(latency=5.0, sleep=sleep)
    results: list[int] = []
    async with client(fake) as http:

        async def fetch(movie_id: int) -> None:
            results.append((await http.get(f"/movie/{movie_id}")).status_code)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for movie_id in range(1, 11):
                    tg.start_soon(fetch, movie_id)
                await sleep.all_waiting.wait()
                # All ten are inside their latency at once: nothing queues.
                assert fake.stats().in_flight == 10
                assert results == []
                sleep.release.set()
    assert results == [200] * 10
    stats = fake.stats()
    assert (stats.in_flight, stats.peak_in_flight) == (0, 10)


_OUTCOME: ContextVar[str] = ContextVar("outcome")


@settings(max_examples=50, deadline=None)
@given(outcomes=st.lists(st.sampled_from(["ok", "cancel", "raise"]), min_size=1, max_size=12))
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_counters_stay_consistent_when_requests_are_cancelled_or_fail(
    backend: str, outcomes: list[str]
) -> None:
    async def main() -> None:
        release, all_waiting = anyio.Event(), anyio.Event()
        entered = 0

        async def sleep(delay: float) -> None:
            nonlocal entered
            entered += 1
            if entered == len(outcomes):
                all_waiting.set()
            if _OUTCOME.get() == "raise":
                raise RuntimeError("sleep failed")
            await release.wait()

        fake = FakeTmdb(latency=1.0, sleep=sleep)
        scopes = [anyio.CancelScope() for _ in outcomes]
        seen: list[object] = []

        async def request(http: httpx.AsyncClient, outcome: str, scope: anyio.CancelScope) -> None:
            _OUTCOME.set(outcome)
            with scope:
                try:
                    seen.append((await http.get("/movie/1")).status_code)
                except RuntimeError:
                    seen.append("raised")

        async with client(fake) as http:
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    for outcome, scope in zip(outcomes, scopes, strict=True):
                        tg.start_soon(request, http, outcome, scope)
                    await all_waiting.wait()
                    assert fake.stats().in_flight == len(outcomes) - outcomes.count("raise")
                    for outcome, scope in zip(outcomes, scopes, strict=True):
                        if outcome == "cancel":
                            scope.cancel()
                    release.set()
        stats = fake.stats()
        assert stats.in_flight == 0
        assert stats.total_requests == len(outcomes)
        assert stats.responses_by_status[200] == outcomes.count("ok")
        assert sorted(map(str, seen)) == sorted(
            ["200"] * outcomes.count("ok") + ["raised"] * outcomes.count("raise")
        )

    anyio.run(main, backend=backend)


# ---------------------------------------------------------------- counters


@pytest.mark.anyio
async def test_counters_by_normalised_path_and_status() -> None:
    fake = FakeTmdb(api_key="k")
    async with client(fake) as http:
        await http.get("/movie/603", params={"api_key": "k", "language": "en-US"})
        await http.get("/movie/603/", params={"api_key": "k"})
        await http.get("/movie/603")  # 401, still a request
        await http.get("/search/movie", params={"api_key": "k", "query": "x", "page": 2})
        await http.get("https://image.tmdb.org/t/p/w500/abc.jpg")
    stats = fake.stats()
    assert stats.total_requests == 5
    assert stats.requests_by_path == {
        "/3/movie/603": 3,
        "/3/search/movie": 1,
        "/t/p/w500/abc.jpg": 1,
    }
    assert stats.requests_by_path["/3/never"] == 0
    assert stats.responses_by_status == {200: 4, 401: 1}
    assert json.loads(json.dumps(stats.as_dict()))["responses_by_status"] == {"200": 4, "401": 1}
    fake.reset_counters()
    stats = fake.stats()
    assert (stats.total_requests, dict(stats.requests_by_path), stats.peak_in_flight) == (0, {}, 0)


@pytest.mark.anyio
async def test_only_get_and_head_are_allowed() -> None:
    fake = FakeTmdb()
    async with client(fake) as http:
        response = await http.post("/movie/603", json={})
        assert (response.status_code, response.json()["status_code"]) == (405, 42)
        head = await http.head("/movie/603")
        assert (head.status_code, head.content) == (200, b"")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("latency", -1),
        ("latency", float("nan")),
        ("latency", "1"),
        ("latency", float("inf")),
        ("jitter", -0.1),
        ("error_rate", 1.5),
        ("error_rate", True),
        ("throttle", -1),
        ("throttle", 1.5),
        ("retry_after", -2),
        ("retry_after", 1.5),
        ("outage", "yes"),
        ("max_id", 0),
        ("max_id", 10**8),
        ("api_key", ""),
        ("api_key", "has space"),
        ("access_token", 5),
        ("deleted_ids", ["603"]),
        ("deleted_ids", [0]),
    ],
)
def test_bad_knobs_raise_configuration_error_naming_them(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=name):
        FakeTmdb(**{name: value})
    if name not in ("max_id", "api_key", "access_token"):
        fake = FakeTmdb()
        with pytest.raises(ConfigurationError, match=name):
            setattr(fake, name, value)


# ---------------------------------------------------------------- images


@pytest.mark.anyio
async def test_images_are_small_deterministic_jpeg_and_png() -> None:
    fake = FakeTmdb()
    async with client(fake) as http:
        jpeg = await http.get("https://image.tmdb.org/t/p/w500/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg")
        again = await http.get("https://image.tmdb.org/t/p/w500/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg")
        other = await http.get("https://image.tmdb.org/t/p/w92/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg")
        png = await http.get("https://image.tmdb.org/t/p/original/logo.png")
        bad_size = await http.get("https://image.tmdb.org/t/p/w501/a.jpg")
        bad_name = await http.get("https://image.tmdb.org/t/p/w500/a.gif")
        nested = await http.get("https://image.tmdb.org/t/p/w500/x/a.jpg")
    assert jpeg.status_code == 200
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.headers["cache-control"] == "public, max-age=31536000"
    assert jpeg.content.startswith(b"\xff\xd8\xff")
    assert jpeg.content.endswith(b"\xff\xd9")
    assert len(jpeg.content) < 512
    assert again.content == jpeg.content != other.content
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert [r.status_code for r in (bad_size, bad_name, nested)] == [404, 404, 404]


# ---------------------------------------------------------------- real socket


async def raw_exchange(
    port: int, payload: bytes, responses: int, *, read_bodies: bool = True
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Send ``payload``, read ``responses`` responses, and tell whether the server then closed."""
    replies = []
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        receive = BufferedByteReceiveStream(stream)
        await stream.send(payload)
        for _ in range(responses):
            head = await receive.receive_until(b"\r\n\r\n", 65536)
            length = re.search(rb"content-length: (\d+)", head)
            has_body = length is not None and read_bodies
            body = await receive.receive_exactly(int(length.group(1))) if has_body else b""
            replies.append((head, body))
        try:
            closed = await receive.receive() == b""
        except (anyio.EndOfStream, anyio.IncompleteRead):
            closed = True
    return replies, closed


def port_of(base_url: str) -> int:
    return httpx.URL(base_url).port or 0


@pytest.mark.anyio
@BOTH_BACKENDS
async def test_serve_answers_over_a_real_socket_with_keep_alive() -> None:
    fake = FakeTmdb(api_key=SENTINEL)
    with anyio.fail_after(10):
        async with fake.serve() as base_url:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/3", base_url)
            async with httpx.AsyncClient(base_url=base_url, params={"api_key": SENTINEL}) as http:
                movie = await http.get("/movie/603")
                assert movie.status_code == 200
                assert movie.json()["title"] == "The Matrix"
                assert movie.headers["connection"] == "keep-alive"
                for path in ("/tv/1399", "/search/multi?query=matrix", "/movie/999999999"):
                    await http.get(path)
                config = (await http.get("/configuration")).json()
                images_url = config["images"]["secure_base_url"]
                assert images_url == base_url.removesuffix("/3") + "/t/p/"
                poster = await http.get(images_url + "w500" + movie.json()["poster_path"])
                assert poster.headers["content-type"] == "image/jpeg"
            async with httpx.AsyncClient() as anonymous:
                assert (await anonymous.get(base_url + "/movie/603")).status_code == 401
    stats = fake.stats()
    assert stats.total_requests == 7
    assert stats.responses_by_status == {200: 5, 404: 1, 401: 1}
    # Six requests from the first client shared one connection; the second client opened one.
    assert stats.connections == 2


@pytest.mark.anyio
@BOTH_BACKENDS
async def test_serve_overlaps_concurrent_requests() -> None:
    sleep = GatedSleep(expected=5)
    fake = FakeTmdb(latency=30.0, sleep=sleep)
    with anyio.fail_after(10):
        async with fake.serve() as base_url, httpx.AsyncClient(base_url=base_url) as http:
            results: list[int] = []

            async def fetch(movie_id: int) -> None:
                results.append((await http.get(f"/movie/{movie_id}")).status_code)

            async with anyio.create_task_group() as tg:
                for movie_id in range(1, 6):
                    tg.start_soon(fetch, movie_id)
                await sleep.all_waiting.wait()
                assert fake.stats().in_flight == 5
                sleep.release.set()
    assert results == [200] * 5
    assert fake.stats().connections == 5


@pytest.mark.anyio
async def test_server_speaks_http_1_1_framing() -> None:
    fake = FakeTmdb()
    async with fake.serve() as base_url:
        port = port_of(base_url)
        pipelined = (
            b"GET /3/movie/603 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /3/tv/1399 HTTP/1.1\r\n\r\n"
            b"GET /3/keyword/1 HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        replies, closed = await raw_exchange(port, pipelined, 3)
        assert closed
        (head1, body1), (_, body2), (head3, _) = replies
        assert head1.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(body1)["title"] == "The Matrix"
        assert json.loads(body2)["name"] == "Game of Thrones"
        assert b"connection: keep-alive" in head1
        assert b"connection: close" in head3
        head_request = b"HEAD /3/movie/603 HTTP/1.1\r\nConnection: close\r\n\r\n"
        replies, closed = await raw_exchange(port, head_request, 1, read_bodies=False)
        assert f"content-length: {len(body1)}".encode() in replies[0][0]
        assert closed  # and no body came before the close
        replies, closed = await raw_exchange(port, b"GET /3/movie/1 HTTP/1.0\r\n\r\n", 1)
        assert closed
        assert replies[0][0].startswith(b"HTTP/1.1 200 OK")
        for malformed in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nbad header\r\n\r\n"):
            replies, closed = await raw_exchange(port, malformed, 1)
            assert replies[0][0].startswith(b"HTTP/1.1 400 Bad Request")
            assert closed
        chunked = b"POST /3/movie/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        replies, _ = await raw_exchange(port, chunked, 1)
        assert replies[0][0].startswith(b"HTTP/1.1 501")
        with_body = (
            b"POST /3/movie/1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
            b"GET /3/movie/1 HTTP/1.1\r\n\r\n"
            b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        replies, _ = await raw_exchange(port, with_body, 3)
        assert [head.split(b"\r\n")[0] for head, _ in replies] == [
            b"HTTP/1.1 405 Method Not Allowed",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 404 Not Found",
        ]
        # Exactly the limit, so the server has read everything before it closes.
        replies, closed = await raw_exchange(port, b"GET /" + b"x" * (65536 - 5), 1)
        assert replies[0][0].startswith(b"HTTP/1.1 431")
        assert closed


@pytest.mark.anyio
@BOTH_BACKENDS
async def test_leaving_serve_closes_connections_and_passes_errors_through() -> None:
    fake = FakeTmdb()
    caught = None
    with anyio.fail_after(10):
        try:
            async with fake.serve() as base_url:
                port = port_of(base_url)
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.send(b"GET /3/movie/1 HTTP/1.1\r\n\r\n")
                raise KeyError("boom")
        except KeyError as exc:  # itself, not inside an ExceptionGroup
            caught = exc
        assert caught is not None
        assert caught.args == ("boom",)
        received = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:  # whatever the server answered, then the end of the stream
                received += await stream.receive()
        assert received == b"" or received.startswith(b"HTTP/1.1 200 OK")
        await stream.aclose()
        with pytest.raises(OSError, match=r"(?i)connect"):
            await anyio.connect_tcp("127.0.0.1", port)
