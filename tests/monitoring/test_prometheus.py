"""The Prometheus export in one process: names, units, types, promtool, a real scrape."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, start_http_server
from psycopg_pool import AsyncConnectionPool

from seerrperf import (
    AsyncLock,
    AsyncTmdbClient,
    CacheManager,
    ConfigurationError,
    LockTimeout,
    NamedCache,
    RedisBackend,
    TmdbNotFound,
    async_pool_factory,
    collect_stats,
)
from seerrperf.prometheus import MULTIPROC_DIR_ENV, PrometheusExporter, SeerrperfCollector
from seerrperf.testing import FakeClock, FakeTmdb

from ._metrics import family_types, promtool_check, samples

pytestmark = pytest.mark.anyio

# The metric list of docs/monitoring.md: dashboards depend on these names.
EXPECTED_FAMILIES = {
    "seerrperf_pool_min_connections": "gauge",
    "seerrperf_pool_max_connections": "gauge",
    "seerrperf_pool_limit_connections": "gauge",
    "seerrperf_pool_connections": "gauge",
    "seerrperf_pool_connections_in_use": "gauge",
    "seerrperf_pool_connections_pending": "gauge",
    "seerrperf_pool_connections_idle": "gauge",
    "seerrperf_pool_requests_waiting": "gauge",
    "seerrperf_pool_requests_total": "counter",
    "seerrperf_pool_requests_queued_total": "counter",
    "seerrperf_pool_requests_wait_seconds_total": "counter",
    "seerrperf_pool_requests_errors_total": "counter",
    "seerrperf_pool_connections_usage_seconds_total": "counter",
    "seerrperf_pool_connections_returned_bad_total": "counter",
    "seerrperf_pool_connections_opened_total": "counter",
    "seerrperf_pool_connections_opening_seconds_total": "counter",
    "seerrperf_pool_connection_errors_total": "counter",
    "seerrperf_pool_connections_lost_total": "counter",
    "seerrperf_pool_grows_total": "counter",
    "seerrperf_pool_query_timeouts_total": "counter",
    "seerrperf_cache_lookups_total": "counter",
    "seerrperf_cache_hits_total": "counter",
    "seerrperf_cache_stale_hits_total": "counter",
    "seerrperf_cache_misses_total": "counter",
    "seerrperf_cache_loads_total": "counter",
    "seerrperf_cache_coalesced_total": "counter",
    "seerrperf_cache_load_errors_total": "counter",
    "seerrperf_cache_evictions_total": "counter",
    "seerrperf_cache_loads_in_progress": "gauge",
    "seerrperf_cache_keys": "gauge",
    "seerrperf_cache_key_bytes": "gauge",
    "seerrperf_cache_value_bytes": "gauge",
    "seerrperf_cache_max_keys": "gauge",
    "seerrperf_cache_shared_hits_total": "counter",
    "seerrperf_cache_local_only_total": "counter",
    "seerrperf_tmdb_requests_total": "counter",
    "seerrperf_tmdb_upstream_calls_total": "counter",
    "seerrperf_tmdb_cache_hits_total": "counter",
    "seerrperf_tmdb_stale_served_total": "counter",
    "seerrperf_tmdb_coalesced_total": "counter",
    "seerrperf_tmdb_not_found_cached_total": "counter",
    "seerrperf_tmdb_retries_total": "counter",
    "seerrperf_tmdb_rate_limited_total": "counter",
    "seerrperf_tmdb_errors_total": "counter",
    "seerrperf_tmdb_upstream_latency_seconds": "histogram",
    "seerrperf_lock_held_keys": "gauge",
    "seerrperf_lock_waiting_tasks": "gauge",
    "seerrperf_lock_acquisitions_total": "counter",
    "seerrperf_lock_contended_acquisitions_total": "counter",
    "seerrperf_lock_timeouts_total": "counter",
}


REDIS_FAMILIES = {
    "seerrperf_redis_available": "gauge",
    "seerrperf_redis_subscribed": "gauge",
    "seerrperf_redis_shared_hits_total": "counter",
    "seerrperf_redis_stale_hits_total": "counter",
    "seerrperf_redis_shared_misses_total": "counter",
    "seerrperf_redis_round_trips_total": "counter",
    "seerrperf_redis_errors_total": "counter",
    "seerrperf_redis_fallbacks_total": "counter",
    "seerrperf_redis_loads_total": "counter",
    "seerrperf_redis_lease_waits_total": "counter",
    "seerrperf_redis_lease_takeovers_total": "counter",
    "seerrperf_redis_leases_lost_total": "counter",
    "seerrperf_redis_lease_timeouts_total": "counter",
    "seerrperf_redis_invalidations_sent_total": "counter",
    "seerrperf_redis_invalidations_received_total": "counter",
    "seerrperf_redis_resyncs_total": "counter",
    "seerrperf_redis_limiter_waits_total": "counter",
    "seerrperf_redis_limiter_wait_seconds_total": "counter",
    "seerrperf_redis_local_only_total": "counter",
}


def _tmdb(**kwargs: object) -> AsyncTmdbClient:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 1}))
    return AsyncTmdbClient(
        api_key="k",
        http_client=httpx.AsyncClient(transport=transport),
        **kwargs,  # type: ignore[arg-type]
    )


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)  # psycopg_pool has no event to wait on


async def _queued_checkout(pool: AsyncConnectionPool[Any]) -> None:
    """One checkout that waits for the only connection, so the wait figures move."""
    async with anyio.create_task_group() as tg:
        async with pool.connection():

            async def wait_for_it() -> None:
                async with pool.connection():
                    pass

            tg.start_soon(wait_for_it)
            await _until(lambda: pool.get_stats().get("requests_waiting", 0) == 1)


async def test_every_section_filled_passes_promtool(postgres_dsn: str) -> None:
    clock = FakeClock()
    caches = CacheManager(clock=clock)
    cache = caches.get_cache("tmdb", ttl=1)
    cache.set("a", 1)
    cache.get("a")
    cache.get("missing")
    clock.advance(5)
    lock = AsyncLock()
    held, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        async with lock("k"):
            held.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await held.wait()
        with pytest.raises(LockTimeout):
            async with lock("k", timeout=0):
                pass
        release.set()
    fake = FakeTmdb(latency=0.01, deleted_ids=[2])
    async with fake.serve() as base_url, AsyncTmdbClient(api_key="k", base_url=base_url) as tmdb:
        await tmdb.get_movie(1)
        await tmdb.get_movie(1)
        for _ in range(2):
            with pytest.raises(TmdbNotFound):
                await tmdb.get_movie(2)
        async with async_pool_factory(postgres_dsn, min_size=1, max_size=1, name="db") as pool:
            await pool.wait()
            await _queued_checkout(pool)
            registry = CollectorRegistry()
            registry.register(
                SeerrperfCollector(
                    pool=pool, caches=caches, tmdb=tmdb, locks={"media": lock, "own": _OwnLock()}
                )
            )
            text = generate_latest(registry).decode()
    result = promtool_check(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert family_types(text) == EXPECTED_FAMILIES
    found = samples(text)
    assert found[("seerrperf_pool_requests_queued_total", (("pool", "db"),))] == 1
    assert found[("seerrperf_cache_lookups_total", (("cache", "tmdb"),))] == 2
    assert found[("seerrperf_tmdb_not_found_cached_total", ())] == 1
    assert found[("seerrperf_tmdb_upstream_calls_total", ())] == 2
    assert found[("seerrperf_tmdb_upstream_latency_seconds_count", ())] == 2
    assert found[("seerrperf_tmdb_upstream_latency_seconds_bucket", (("le", "+Inf"),))] == 2
    # FakeTmdb answers after 10 ms: no answer is in the 5 ms bucket.
    assert found[("seerrperf_tmdb_upstream_latency_seconds_bucket", (("le", "0.005"),))] == 0
    assert found[("seerrperf_tmdb_upstream_latency_seconds_sum", ())] >= 0.02
    assert found[("seerrperf_lock_timeouts_total", (("lock", "media"),))] == 1
    # An application's lock reports what it has; nothing is made up for the rest.
    assert found[("seerrperf_lock_held_keys", (("lock", "own"),))] == 3
    assert ("seerrperf_lock_timeouts_total", (("lock", "own"),)) not in found


@dataclasses.dataclass(frozen=True)
class _OwnStats:
    held_keys: int = 3

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _OwnLock:
    def stats(self) -> _OwnStats:
        return _OwnStats()


async def test_pool_times_are_seconds(postgres_dsn: str) -> None:
    registry = CollectorRegistry()
    async with async_pool_factory(postgres_dsn, min_size=1, max_size=1, name="db") as pool:
        await pool.wait()
        registry.register(SeerrperfCollector(pool=pool))
        for _ in range(3):
            await _queued_checkout(pool)
        raw = collect_stats(pool=pool)["pool"]
        found = samples(generate_latest(registry).decode())
    labels = (("pool", "db"),)
    assert found[("seerrperf_pool_requests_queued_total", labels)] == raw["requests_queued"] == 3
    assert found[("seerrperf_pool_requests_wait_seconds_total", labels)] == pytest.approx(
        raw["requests_wait_ms"] / 1000
    )
    assert found[("seerrperf_pool_connections_usage_seconds_total", labels)] == pytest.approx(
        raw["usage_ms"] / 1000
    )
    assert found[("seerrperf_pool_connections_opening_seconds_total", labels)] == pytest.approx(
        raw["connections_ms"] / 1000
    )
    assert found[("seerrperf_pool_max_connections", labels)] == 1
    assert found[("seerrperf_pool_connections_in_use", labels)] == 0
    assert found[("seerrperf_pool_requests_total", labels)] >= 6


async def test_latency_histogram_is_the_transports() -> None:
    tmdb = _tmdb(max_rps=None)
    for movie in range(1, 6):
        await tmdb.get_movie(movie)
    registry = CollectorRegistry()
    registry.register(SeerrperfCollector(tmdb=tmdb))
    found = samples(generate_latest(registry).decode())
    await tmdb.aclose()
    buckets = {
        labels[0][1]: value
        for (name, labels), value in found.items()
        if name == "seerrperf_tmdb_upstream_latency_seconds_bucket"
    }
    assert list(buckets) == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"
    ]  # fmt: skip
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert buckets["+Inf"] == 5
    assert found[("seerrperf_tmdb_upstream_latency_seconds_count", ())] == 5
    assert 0 < found[("seerrperf_tmdb_upstream_latency_seconds_sum", ())] < 5
    assert not any("milliseconds" in name or "_p95" in name for name, _ in found)


async def test_prometheus_scrape_over_http() -> None:
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
    exporter = PrometheusExporter(caches=caches, tmdb=tmdb, locks=lock)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=exporter.registry)
    try:
        port = server.server_address[1]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert response.status_code == 200
    found = samples(response.text)
    assert found[("seerrperf_cache_hits_total", (("cache", "tmdb"),))] == 2
    assert found[("seerrperf_cache_misses_total", (("cache", "tmdb"),))] == 1
    assert found[("seerrperf_cache_lookups_total", (("cache", "tmdb"),))] == 3
    assert found[("seerrperf_cache_keys", (("cache", "tmdb"),))] == 1
    assert found[("seerrperf_tmdb_upstream_calls_total", ())] == 1
    assert found[("seerrperf_lock_acquisitions_total", (("lock", "default"),))] == 1
    await tmdb.aclose()


def test_one_process_exporter_serves_its_own_registry_or_yours() -> None:
    cache = NamedCache("c")
    cache.get("x")
    with PrometheusExporter(caches=cache) as exporter:
        assert not exporter.multiprocess
        assert exporter.directory is None
        assert repr(exporter) == "<PrometheusExporter one process>"
        exporter.flush()  # nothing to copy in one process
        assert exporter.registry.get_sample_value("seerrperf_cache_misses_total", {"cache": "c"})
    exporter.close()  # idempotent
    yours = CollectorRegistry()
    PrometheusExporter(caches=cache, registry=yours)
    assert yours.get_sample_value("seerrperf_cache_misses_total", {"cache": "c"}) == 1
    assert REGISTRY.get_sample_value("seerrperf_cache_misses_total", {"cache": "c"}) is None


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "at least one of pool, caches, tmdb, locks"),
        ({"caches": NamedCache("c"), "flush_interval": 0}, "flush_interval must be"),
        ({"caches": NamedCache("c"), "flush_interval": "1"}, "flush_interval must be"),
        ({"caches": NamedCache("c"), "registry": REGISTRY.collect}, "registry must be a"),
        ({"tmdb": "tmdb"}, "tmdb must be a TmdbClient"),
    ],
)
def test_bad_exporter_arguments_are_named(arguments: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        PrometheusExporter(**arguments)  # type: ignore[arg-type]
    if "flush_interval" not in arguments and "registry" not in arguments:
        with pytest.raises(ConfigurationError, match=named):
            SeerrperfCollector(**arguments)  # type: ignore[arg-type]


def test_multiprocess_misconfiguration_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = NamedCache("c")
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(ConfigurationError, match="must name an existing directory"):
        PrometheusExporter(caches=cache)
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigurationError, match="registry must be None"):
        PrometheusExporter(caches=cache, registry=CollectorRegistry())
    # This test process imported prometheus_client before the variable was set.
    with pytest.raises(ConfigurationError, match="set after prometheus_client was imported"):
        PrometheusExporter(caches=cache)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_the_redis_section_passes_promtool_in_base_units(redis_url: str) -> None:
    with RedisBackend.from_url(redis_url, namespace="promtool", timeout=5.0) as backend:
        caches = CacheManager(shared=backend)
        cache = caches.get_cache("tmdb")
        cache.get_or_set(("movie", 1), lambda: {"id": 1})
        limiter = backend.rate_limiter("tmdb", max_rps=10)
        limiter.reserve()
        limiter.reserve()  # waits about 0.1 s: counted, not slept here
        registry = CollectorRegistry()
        registry.register(SeerrperfCollector(caches=caches))
        text = generate_latest(registry).decode()
        caches.close()
    result = promtool_check(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    types = family_types(text)
    assert {name: types[name] for name in REDIS_FAMILIES} == REDIS_FAMILIES
    found = samples(text)
    assert found[("seerrperf_redis_loads_total", ())] == 1
    assert found[("seerrperf_redis_available", ())] == 1
    assert found[("seerrperf_redis_limiter_waits_total", ())] == 1
    assert 0.05 < found[("seerrperf_redis_limiter_wait_seconds_total", ())] < 0.2  # seconds
    assert found[("seerrperf_cache_shared_hits_total", (("cache", "tmdb"),))] == 0
