"""Prometheus export of the figures :func:`seerrperf.collect_stats` gathers.

Needs ``prometheus_client`` (``pip install "seerrperf[prometheus]"``)::

    from prometheus_client import REGISTRY
    from seerrperf.prometheus import SeerrperfCollector

    REGISTRY.register(SeerrperfCollector(pool=pool, caches=caches, tmdb=tmdb, locks=locks))

The collector reads the live objects at scrape time, so the metrics never go
stale and nothing is counted twice. Metric names start with ``seerrperf_``;
counters end in ``_total``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'seerrperf.prometheus needs prometheus_client: pip install "seerrperf[prometheus]"'
    ) from _missing

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ._stats import Caches, Lock, collect_stats
from ._tmdb import AsyncTmdbClient, TmdbClient

__all__ = ["SeerrperfCollector"]

# (stats key, metric suffix, help, is_counter)
_POOL = (
    ("pool_max", "pool_max_connections", "Most connections the pool may open.", False),
    ("pool_size", "pool_connections", "Connections open now (in use or idle).", False),
    ("in_use", "pool_connections_in_use", "Connections checked out now.", False),
    ("pool_available", "pool_connections_idle", "Idle connections ready in the pool.", False),
    ("requests_waiting", "pool_requests_waiting", "Checkouts waiting for a connection.", False),
    ("requests_num", "pool_requests", "Connection checkouts requested.", True),
    ("requests_queued", "pool_requests_queued", "Checkouts that had to wait.", True),
    ("requests_errors", "pool_requests_errors", "Checkouts that failed or timed out.", True),
    ("requests_wait_ms", "pool_requests_wait_milliseconds", "Time spent waiting.", True),
    ("connections_num", "pool_connections_opened", "Connections opened on the server.", True),
    ("connections_errors", "pool_connection_errors", "Failed connection attempts.", True),
    ("connections_lost", "pool_connections_lost", "Connections found broken.", True),
)
_CACHE = (
    ("hits", "cache_hits", "Lookups answered with a fresh entry.", True),
    ("misses", "cache_misses", "Lookups with no usable entry.", True),
    ("stale_hits", "cache_stale_hits", "Lookups answered with a stale entry.", True),
    ("loads", "cache_loads", "Loader runs started.", True),
    ("coalesced", "cache_coalesced", "Misses that joined a running load.", True),
    ("load_errors", "cache_load_errors", "Loader runs that raised.", True),
    ("evictions", "cache_evictions", "Entries evicted to stay within maxsize.", True),
    ("keys", "cache_keys", "Entries held now.", False),
    ("maxsize", "cache_max_keys", "Bound on entries.", False),
    ("hit_rate", "cache_hit_ratio", "Share of lookups answered from the cache.", False),
    ("value_bytes", "cache_value_bytes", "Approximate memory held by values.", False),
)
_TMDB = (
    ("requests", "tmdb_requests", "Calls made to the TMDB client.", True),
    ("upstream_calls", "tmdb_upstream_calls", "HTTP requests sent to TMDB.", True),
    ("cache_hits", "tmdb_cache_hits", "Answers from a fresh cache entry.", True),
    ("stale_served", "tmdb_stale_served", "Answers from a stale entry.", True),
    ("coalesced", "tmdb_coalesced", "Callers that shared another's upstream call.", True),
    ("retries", "tmdb_retries", "Requests sent again.", True),
    ("rate_limited", "tmdb_rate_limited", "429 responses received.", True),
    ("errors", "tmdb_errors", "Requests that ended in an error.", True),
    ("latency_p50_ms", "tmdb_latency_p50_milliseconds", "Median upstream latency.", False),
    ("latency_p95_ms", "tmdb_latency_p95_milliseconds", "95th percentile latency.", False),
)
_LOCK = (
    ("held_keys", "lock_held_keys", "Keys held now.", False),
    ("waiting_tasks", "lock_waiting_tasks", "Tasks queued for a key.", False),
    ("acquisitions", "lock_acquisitions", "Successful acquisitions.", True),
    ("contended_acquisitions", "lock_contended_acquisitions", "Acquisitions that queued.", True),
    ("timeouts", "lock_timeouts", "Acquisitions that timed out.", True),
)


def _families(
    table: tuple[tuple[str, str, str, bool], ...],
    rows: Mapping[str, Mapping[str, Any]],
    label: str | None,
) -> Iterator[Metric]:
    for key, suffix, help_text, counter in table:
        name = f"seerrperf_{suffix}"
        labels = [label] if label else []
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, help_text, labels=labels)
            if counter
            else GaugeMetricFamily(name, help_text, labels=labels)
        )
        for row_name, row in rows.items():
            family.add_metric([row_name] if label else [], float(row.get(key, 0)))
        yield family


class SeerrperfCollector(Collector):
    """A Prometheus collector for a pool, caches, a TMDB client and locks.

    Takes the same arguments as :func:`seerrperf.collect_stats`.

    Args:
        pool: A psycopg_pool pool; metrics labelled ``pool="<name>"``.
        caches: A ``CacheManager``, mapping or caches; labelled ``cache``.
        tmdb: A ``TmdbClient`` or ``AsyncTmdbClient``.
        locks: A lock or a mapping of names to locks; labelled ``lock``.
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None = None,
        caches: Caches | None = None,
        tmdb: TmdbClient | AsyncTmdbClient | None = None,
        locks: Lock | Mapping[str, Lock] | None = None,
    ) -> None:
        self._sources: dict[str, Any] = {
            "pool": pool,
            "caches": caches,
            "tmdb": tmdb,
            "locks": locks,
        }
        collect_stats(**self._sources)  # fail at registration, not at the first scrape

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families, read from the live objects."""
        snapshot = collect_stats(**self._sources)
        if "pool" in snapshot:
            pool = snapshot["pool"]
            yield from _families(_POOL, {pool["name"]: pool}, "pool")
        if "caches" in snapshot:
            yield from _families(_CACHE, snapshot["caches"], "cache")
        if "tmdb" in snapshot:
            yield from _families(_TMDB, {"": snapshot["tmdb"]}, None)
        if "locks" in snapshot:
            yield from _families(_LOCK, snapshot["locks"], "lock")
