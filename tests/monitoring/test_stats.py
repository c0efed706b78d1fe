"""collect_stats: one JSON-ready snapshot, on real parts, at a cost that stays flat."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from seerrperf import (
    AsyncLock,
    AsyncTmdbClient,
    CacheManager,
    ConfigurationError,
    NamedCache,
    RedisBackend,
    TmdbClient,
    async_pool_factory,
    collect_stats,
)
from seerrperf.prometheus import PrometheusExporter, SeerrperfCollector

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


def test_byte_sizes_are_running_sums_and_exact_on_request() -> None:
    cache = NamedCache("c")
    cache.set("key", {"a": [1, 2, 3]})
    kept = collect_stats(caches=cache)["caches"]["c"]
    exact = collect_stats(caches=cache, sizes="exact")["caches"]["c"]
    left_out = collect_stats(caches=cache, sizes=False)["caches"]["c"]
    assert kept["key_bytes"] > 0
    assert kept["value_bytes"] > 0
    assert (exact["key_bytes"], exact["value_bytes"]) == (kept["key_bytes"], kept["value_bytes"])
    # Not computed is left out rather than reported as 0 bytes.
    assert "key_bytes" not in left_out
    assert "value_bytes" not in left_out
    assert left_out["keys"] == 1
    with pytest.raises(ConfigurationError, match="sizes must be True or False"):
        collect_stats(caches=cache, sizes=1)  # type: ignore[arg-type]


class _SizeProbe:
    """A cached value that counts how often ``sys.getsizeof`` (the size walk) measures it."""

    def __init__(self) -> None:
        self.measured = 0

    def __sizeof__(self) -> int:
        self.measured += 1
        return 64


def test_a_scrape_does_not_walk_the_entries() -> None:
    entries = 20_000
    cache = NamedCache("big", maxsize=entries)
    probe = _SizeProbe()
    for key in range(entries):
        cache.set(key, probe)
    probe.measured = 0
    registry = CollectorRegistry()
    registry.register(SeerrperfCollector(caches=cache))
    exporter = PrometheusExporter(caches=cache)
    for _ in range(3):
        generate_latest(registry)
        generate_latest(exporter.registry)
        collect_stats(caches=cache)
    assert probe.measured == 0
    assert registry.get_sample_value("seerrperf_cache_keys", {"cache": "big"}) == entries
    assert registry.get_sample_value("seerrperf_cache_value_bytes", {"cache": "big"})
    # The walk is still there on request, and the probe sees it.
    collect_stats(caches=cache, sizes="exact")
    assert probe.measured >= entries


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
        ({"redis": object()}, "redis must be a RedisBackend"),
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
    assert b"seerrperf_tmdb_upstream_calls_total 1.0" in generate_latest(registry)


def test_a_shared_managers_backend_is_its_own_section(redis_url: str) -> None:
    with RedisBackend.from_url(redis_url, namespace="stats-section", timeout=5.0) as backend:
        caches = CacheManager(shared=backend)
        cache = caches.get_cache("tmdb")
        cache.get_or_set(("movie", 1), lambda: {"id": 1})
        snapshot = collect_stats(caches=caches)
        assert set(snapshot["redis"]) == set(backend.stats().as_dict())
        assert snapshot["redis"]["namespace"] == "stats-section"
        assert snapshot["redis"]["loads"] == 1
        assert set(snapshot["caches"]["tmdb"]) >= {"shared_hits", "local_only"}
        assert "redis" not in collect_stats(caches=CacheManager())
        assert collect_stats(redis=backend)["redis"]["namespace"] == "stats-section"
        caches.close()
