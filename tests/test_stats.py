"""collect_stats and the Prometheus export, on real parts."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from seerrperf import (
    AsyncLock,
    AsyncTmdbClient,
    CacheManager,
    ConfigurationError,
    TmdbClient,
    async_pool_factory,
    collect_stats,
)
from seerrperf.prometheus import SeerrperfCollector

pytestmark = pytest.mark.anyio


def _tmdb() -> AsyncTmdbClient:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 1}))
    return AsyncTmdbClient(api_key="k", http_client=httpx.AsyncClient(transport=transport))


async def test_one_snapshot_of_everything(postgres_dsn: str) -> None:
    caches = CacheManager.seerr()
    caches.get_cache("tmdb").set("a", 1)
    caches.get_cache("tmdb").get("a")
    caches.get_cache("tmdb").get("b")
    lock = AsyncLock()
    async with lock("k"):
        pass
    tmdb = _tmdb()
    await tmdb.get_movie(1)
    await tmdb.get_movie(1)
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=3, name="app") as pool:
        await pool.wait()  # otherwise a connection still being opened counts as in use
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
            snapshot = collect_stats(pool=pool, caches=caches, tmdb=tmdb, locks={"media": lock})
    json.dumps(snapshot)
    assert snapshot["collected_at"].endswith("Z")
    assert snapshot["pool"]["name"] == "app"
    assert snapshot["pool"]["pool_max"] == 3
    assert snapshot["pool"]["in_use"] == 1
    assert snapshot["pool"]["connections_lost"] == 0  # present even when psycopg omits it
    assert set(snapshot["caches"]) >= {"tmdb", "radarr", "plexguid"}
    assert snapshot["caches"]["tmdb"]["hits"] == 1
    assert snapshot["caches"]["tmdb"]["hit_rate"] == 0.5
    assert snapshot["tmdb"]["requests"] == 2
    assert snapshot["tmdb"]["upstream_calls"] == 1
    assert snapshot["locks"]["media"]["acquisitions"] == 1
    await tmdb.aclose()


def test_nothing_to_collect_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        collect_stats()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"locks": object()}, "locks must be a lock"),
        ({"locks": {"a": object()}}, "locks must be a lock"),
        ({"caches": [object()]}, "caches must be a CacheManager"),
        ({"caches": {"t": "not a cache"}}, "caches must be a CacheManager"),
        ({"caches": 3}, "caches must be a CacheManager"),
        ({"pool": object()}, "pool must be a psycopg_pool pool"),
        ({"tmdb": object()}, "tmdb must be a TmdbClient"),
    ],
)
def test_what_cannot_be_collected_is_named(arguments: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        collect_stats(**arguments)  # type: ignore[arg-type]


def test_a_lock_of_the_applications_own_is_collected() -> None:
    class Snapshot:
        def as_dict(self) -> dict[str, int]:
            return {"held_keys": 2}

    class OwnLock:
        def stats(self) -> Snapshot:
            return Snapshot()

    assert collect_stats(locks=OwnLock())["locks"] == {"default": {"held_keys": 2}}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def test_prometheus_scrape_over_http(registry: CollectorRegistry) -> None:
    caches = CacheManager()
    cache = caches.get_cache("tmdb")
    cache.set("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("missing")
    lock = AsyncLock()
    async with lock("x"):
        pass
    tmdb = _tmdb()
    await tmdb.get_movie(7)
    registry.register(SeerrperfCollector(caches=caches, tmdb=tmdb, locks=lock))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("seerrperf_cache_hits_total", (("cache", "tmdb"),))] == 2
    assert samples[("seerrperf_cache_misses_total", (("cache", "tmdb"),))] == 1
    assert samples[("seerrperf_cache_keys", (("cache", "tmdb"),))] == 1
    assert samples[("seerrperf_tmdb_upstream_calls_total", ())] == 1
    assert samples[("seerrperf_lock_acquisitions_total", (("lock", "default"),))] == 1
    await tmdb.aclose()


def test_collector_refuses_nothing() -> None:
    with pytest.raises(ConfigurationError):
        SeerrperfCollector()


async def test_pool_metrics(postgres_dsn: str, registry: CollectorRegistry) -> None:
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=4, name="db") as pool:
        await pool.wait()
        registry.register(SeerrperfCollector(pool=pool))
        async with pool.connection():
            in_use = registry.get_sample_value("seerrperf_pool_connections_in_use", {"pool": "db"})
        assert in_use == 1
        assert registry.get_sample_value("seerrperf_pool_max_connections", {"pool": "db"}) == 4
        requests = registry.get_sample_value("seerrperf_pool_requests_total", {"pool": "db"})
        assert requests is not None
        assert requests >= 1


def test_the_sync_tmdb_client_is_collected_like_the_async_one() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 1}))
    with TmdbClient(api_key="k", http_client=httpx.Client(transport=transport)) as tmdb:
        tmdb.get_movie(1)
        tmdb.get_movie(1)
        snapshot = collect_stats(tmdb=tmdb)
    assert snapshot["tmdb"]["requests"] == 2
    assert snapshot["tmdb"]["upstream_calls"] == 1
    assert snapshot["tmdb"]["cache_hits"] == 1
    registry = CollectorRegistry()
    registry.register(SeerrperfCollector(tmdb=tmdb))  # accepted at registration
