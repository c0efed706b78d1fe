"""TmdbClient, the sync twin: threads share loads, the limiter, the 429 pause and stale serving."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import httpx
import pytest

from seerrperf import NamedCache, TmdbClient, TmdbNotFound, TmdbUnavailable
from seerrperf.testing import FakeClock, FakeTmdb
from tests._support import SENTINEL

from ._upstream import SyncSleeps, Upstream, join_refreshes, make_twin

_T = TypeVar("_T")
HOUR = 3600
WAIT = 30  # seconds: the deadline of every wait below, never reached when all is well


def sync_client(upstream: Upstream, clock: FakeClock | None = None, **kwargs: Any) -> TmdbClient:
    tmdb = make_twin("sync", upstream, clock, **kwargs)
    assert isinstance(tmdb, TmdbClient)
    return tmdb


def in_threads(count: int, fn: Callable[[], _T]) -> list[_T]:
    """Run ``fn`` on ``count`` threads released together; their results, in order."""
    start = threading.Barrier(count)

    def one(_: int) -> _T:
        start.wait(WAIT)
        return fn()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        return [future.result(timeout=WAIT) for future in futures]


class MissSignallingCache(NamedCache):
    """Releases ``missed`` on every lookup that misses, so a test knows who is waiting."""

    def __init__(self) -> None:
        super().__init__("tmdb")
        self.missed = threading.Semaphore(0)

    def get(self, key: Hashable, default: Any = None) -> Any:
        value = super().get(key, default)
        if value is default:
            self.missed.release()
        return value


def test_fifty_threads_asking_one_id_make_one_upstream_call() -> None:
    upstream = Upstream()
    upstream.thread_gate = threading.Event()
    cache = MissSignallingCache()
    tmdb = sync_client(upstream, cache=cache)

    def open_when_all_have_missed() -> None:
        for _ in range(50):
            assert cache.missed.acquire(timeout=WAIT)
        assert upstream.thread_gate is not None
        upstream.thread_gate.set()

    threading.Thread(target=open_when_all_have_missed, daemon=True).start()

    def ask() -> dict[str, Any]:
        return tmdb.get_movie(603)

    results = in_threads(50, ask)
    assert upstream.calls == {"/3/movie/603": 1}
    assert all(r["id"] == 603 for r in results)
    stats = tmdb.stats()
    assert (stats.requests, stats.upstream_calls) == (50, 1)
    assert stats.coalesced + stats.cache_hits == 49  # each either joined the load or hit it


def test_a_stale_entry_is_served_at_once_while_exactly_one_refresh_runs() -> None:
    clock = FakeClock(1000)
    version = 1
    upstream = Upstream(lambda r: httpx.Response(200, json={"version": version}))
    tmdb = sync_client(upstream, clock)
    assert tmdb.get_movie(1)["version"] == 1
    version = 2
    upstream.thread_gate = threading.Event()  # the refresh will hang until released
    clock.advance(6 * HOUR + 10)  # expired, inside the stale-while-revalidate window
    answers = in_threads(20, lambda: tmdb.get_movie(1)["version"])
    assert answers == [1] * 20  # at once: none of them waited for the refresh
    assert upstream.total == 2  # the first load and one refresh, still held
    assert tmdb.cache.stats().loading == 1
    upstream.thread_gate.set()
    join_refreshes()
    assert tmdb.get_movie(1)["version"] == 2
    assert upstream.total == 2
    assert tmdb.stats().stale_served == 20


def test_a_429_with_retry_after_pauses_every_thread() -> None:
    sleeps = SyncSleeps()  # time stands still: every later request finds the pause
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"})])
    lock = threading.Lock()

    def respond(request: httpx.Request) -> httpx.Response:
        with lock:
            first = next(answers, None)
        return first or Upstream.movie(request)

    upstream = Upstream(respond)
    tmdb = sync_client(upstream, sleep=sleeps, max_rps=None)
    assert tmdb.get_movie(1)["id"] == 1  # 429, waits 3 s, retries
    ids = iter(range(2, 12))
    results = in_threads(10, lambda: tmdb.get_movie(next(ids)))
    assert sorted(r["id"] for r in results) == list(range(2, 12))
    assert sleeps.delays == [3.0] * 11  # the one that got the 429, and every other thread
    stats = tmdb.stats()
    assert (stats.rate_limited, stats.retries, stats.upstream_calls) == (1, 1, 12)


def test_the_limiter_is_shared_by_every_thread() -> None:
    sleeps = SyncSleeps()  # time stands still: each wait shows its slot
    tmdb = sync_client(Upstream(), sleep=sleeps, max_rps=10)
    ids = iter(range(1, 21))
    lock = threading.Lock()

    def ask() -> Any:
        with lock:
            movie_id = next(ids)
        return tmdb.get_movie(movie_id)

    in_threads(20, ask)
    assert sorted(sleeps.delays) == pytest.approx([0.1 * i for i in range(1, 20)])


def test_an_outage_serves_stale_inside_the_window_and_fails_outside() -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    tmdb = sync_client(upstream, clock, max_retries=1)
    movie = tmdb.get_movie(1)
    upstream.failing = 503
    clock.advance(6 * HOUR + 3 * HOUR + 60)  # past TTL and SWR window, inside stale-if-error
    assert in_threads(10, lambda: tmdb.get_movie(1)) == [movie] * 10
    clock.advance(24 * HOUR)  # past stale-if-error
    with pytest.raises(TmdbUnavailable) as info:
        tmdb.get_movie(1)
    assert info.value.status == 503


def test_a_title_deleted_during_a_background_refresh_is_replaced_by_the_404() -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    tmdb = sync_client(upstream, clock)
    movie = tmdb.get_movie(1)
    upstream.failing = 404
    clock.advance(6 * HOUR + 10)
    assert tmdb.get_movie(1) == movie  # stale, at once; the refresh gets 404
    join_refreshes()
    for _ in range(3):
        with pytest.raises(TmdbNotFound):
            tmdb.get_movie(1)
    assert upstream.total == 2


def test_counters_are_exact_under_threads() -> None:
    upstream = Upstream()
    tmdb = sync_client(upstream, max_rps=None)
    per_thread = 100

    def work() -> None:
        for _ in range(per_thread):
            tmdb.get("/movie/1", ttl=0)  # neither cached nor coalesced: one call each

    in_threads(16, work)
    stats = tmdb.stats()
    assert stats.requests == 16 * per_thread
    assert stats.upstream_calls == 16 * per_thread == upstream.total


def test_batch_forms_are_aligned_and_isolate_failures() -> None:
    upstream = Upstream(
        lambda r: httpx.Response(404) if r.url.path.endswith("/2") else Upstream.movie(r)
    )
    tmdb = sync_client(upstream)
    movies = tmdb.get_movies([3, 2, 1, 3], concurrency=4)
    assert [m["id"] if m else None for m in movies] == [3, None, 1, 3]
    assert upstream.calls["/3/movie/3"] == 1
    assert tmdb.get_tvs([]) == []
    assert tmdb.get_tvs([7])[0] is not None


def test_injected_http_client_is_not_closed_but_an_owned_one_is() -> None:
    http = Upstream().sync_http()
    with TmdbClient(api_key="tmdb-test-key", http_client=http) as tmdb:
        tmdb.get_movie(1)
    assert not http.is_closed
    http.close()
    with pytest.raises(Exception, match="closed"):
        tmdb.get_movie(2)


def test_end_to_end_over_a_real_socket() -> None:
    fake = FakeTmdb(access_token=SENTINEL, latency=0.005)
    with (
        fake.serve_in_thread() as base_url,
        TmdbClient(access_token=SENTINEL, base_url=base_url) as tmdb,
    ):
        assert tmdb.get_movie(603, append_to_response=["credits"])["title"] == "The Matrix"
        assert tmdb.get_tv(1399)["name"] == "Game of Thrones"
        assert "results" in tmdb.search_multi("matrix")
        assert isinstance(tmdb.get_languages()["results"], list)
        movies = tmdb.get_movies([603, 604, 603, fake.max_id + 1])
        assert [m["id"] if m else None for m in movies] == [603, 604, 603, None]
        assert tmdb.image_base_url() == base_url.removesuffix("/3") + "/t/p/"
        in_threads(16, lambda: tmdb.get_movie(605))
        stats = fake.stats()
    assert stats.requests_by_path["/3/movie/605"] == 1
    assert stats.requests_by_path["/3/movie/603"] == 2  # with and without append_to_response
    assert stats.connections <= 16  # keep-alive: connections are reused
