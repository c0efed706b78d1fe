"""Prometheus export of the figures :func:`seerrperf.collect_stats` gathers.

Needs ``prometheus_client`` (``pip install "seerrperf[prometheus]"``). One
process (a single uvicorn worker, a thread-based server)::

    from prometheus_client import REGISTRY
    from seerrperf.prometheus import SeerrperfCollector

    REGISTRY.register(SeerrperfCollector(pool=pool, caches=caches, tmdb=tmdb, locks=locks))

Several worker processes (gunicorn ``-w``, uvicorn ``--workers``), where any
worker may answer a scrape: set ``PROMETHEUS_MULTIPROC_DIR`` before the
processes start and serve :attr:`PrometheusExporter.registry`, which gives
the fleet's figures (prometheus_client's multiprocess mode)::

    exporter = PrometheusExporter(pool=pool, caches=caches, tmdb=tmdb, locks=locks)
    app.mount("/metrics", prometheus_client.make_asgi_app(exporter.registry))

Metric names start with ``seerrperf_``, are in base units (seconds, bytes),
counters end in ``_total``, the upstream latency is a histogram; the
complete list is in ``docs/monitoring.md``.
"""

from __future__ import annotations

import atexit
import bisect
import glob
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

try:
    from prometheus_client import Counter, Gauge, Histogram, values
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.metrics_core import Metric
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.utils import floatToGoString
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'seerrperf.prometheus needs prometheus_client: pip install "seerrperf[prometheus]"'
    ) from _missing

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import _validate
from ._errors import ConfigurationError
from ._runtime import HistogramSnapshot
from ._stats import Caches, Lock, Tmdb, collect_stats, upstream_latency

if TYPE_CHECKING:
    from ._redis.backend import RedisBackend

__all__ = ["MULTIPROC_DIR_ENV", "PrometheusExporter", "SeerrperfCollector"]

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches prometheus_client to multiprocess mode."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Spec:
    """One metric: where its value is in a stats row, and how it is exported."""

    key: str
    name: str
    help: str
    counter: bool
    scale: float = 1.0  # psycopg_pool counts milliseconds; Prometheus wants seconds


def _counter(key: str, name: str, help_text: str, scale: float = 1.0) -> _Spec:
    return _Spec(key, f"seerrperf_{name}_total", help_text, True, scale)


def _gauge(key: str, name: str, help_text: str) -> _Spec:
    return _Spec(key, f"seerrperf_{name}", help_text, False)


_MS = 0.001

_POOL = (
    _gauge("pool_min", "pool_min_connections", "Connections the pool keeps open at least."),
    _gauge("pool_max", "pool_max_connections", "Most connections the pool may open."),
    _gauge("pool_limit", "pool_limit_connections", "Connections the growth rule allows now."),
    _gauge("pool_size", "pool_connections", "Connections open now (in use or idle)."),
    _gauge("in_use", "pool_connections_in_use", "Connections checked out now."),
    _gauge("connections_pending", "pool_connections_pending", "Connections being opened now."),
    _gauge("pool_available", "pool_connections_idle", "Idle connections ready in the pool."),
    _gauge("requests_waiting", "pool_requests_waiting", "Checkouts waiting for a connection now."),
    _counter("requests_num", "pool_requests", "Connection checkouts requested."),
    _counter("requests_queued", "pool_requests_queued", "Checkouts that had to wait."),
    _counter(
        "requests_wait_ms",
        "pool_requests_wait_seconds",
        "Time checkouts spent waiting for a connection.",
        _MS,
    ),
    _counter("requests_errors", "pool_requests_errors", "Checkouts that failed or timed out."),
    _counter(
        "usage_ms", "pool_connections_usage_seconds", "Time connections spent checked out.", _MS
    ),
    _counter(
        "returns_bad",
        "pool_connections_returned_bad",
        "Connections returned broken or in a transaction.",
    ),
    _counter("connections_num", "pool_connections_opened", "Connections opened on the server."),
    _counter(
        "connections_ms",
        "pool_connections_opening_seconds",
        "Time spent opening connections.",
        _MS,
    ),
    _counter("connections_errors", "pool_connection_errors", "Failed connection attempts."),
    _counter("connections_lost", "pool_connections_lost", "Connections found broken."),
    _counter("grows", "pool_grows", "Connections the growth rule added."),
    _counter(
        "query_timeouts",
        "pool_query_timeouts",
        "Commands that reached query_timeout (their connections were closed).",
    ),
)
_CACHE = (
    _counter("lookups", "cache_lookups", "Lookups (hits, stale hits and misses)."),
    _counter("hits", "cache_hits", "Lookups answered with a fresh entry."),
    _counter("stale_hits", "cache_stale_hits", "Lookups answered with a stale entry."),
    _counter("misses", "cache_misses", "Lookups with no usable entry."),
    _counter("loads", "cache_loads", "Loader runs started."),
    _counter("coalesced", "cache_coalesced", "Misses that joined a running load."),
    _counter("load_errors", "cache_load_errors", "Loader runs that raised."),
    _counter("evictions", "cache_evictions", "Entries evicted to stay within the bound."),
    _gauge("loading", "cache_loads_in_progress", "Loader runs in progress now."),
    _gauge("keys", "cache_keys", "Entries held now."),
    _gauge("maxsize", "cache_max_keys", "Most entries the cache holds."),
    # Exported only when the snapshot has them (a cheap figure, not a walk per scrape).
    _gauge("key_bytes", "cache_key_bytes", "Approximate memory held by keys."),
    _gauge("value_bytes", "cache_value_bytes", "Approximate memory held by values."),
    _counter("shared_hits", "cache_shared_hits", "Lookups answered by the shared tier."),
    _counter("local_only", "cache_local_only", "Keys or values kept out of the shared tier."),
)
_REDIS = (
    _gauge("available", "redis_available", "1 while calls go to Redis (breaker closed)."),
    _gauge("subscribed", "redis_subscribed", "1 while this process receives invalidations."),
    _counter("shared_hits", "redis_shared_hits", "Lookups answered with a fresh shared entry."),
    _counter("stale_hits", "redis_stale_hits", "Lookups answered with a stale shared entry."),
    _counter("shared_misses", "redis_shared_misses", "Lookups with no usable shared entry."),
    _counter("round_trips", "redis_round_trips", "Requests sent to Redis."),
    _counter("errors", "redis_errors", "Requests to Redis that failed."),
    _counter("fallbacks", "redis_fallbacks", "Operations answered without Redis."),
    _counter("loads", "redis_loads", "Loader runs started by the shared tier."),
    _counter("lease_waits", "redis_lease_waits", "Loads that waited for another's lease."),
    _counter("takeovers", "redis_lease_takeovers", "Leases taken over from a dead holder."),
    _counter("leases_lost", "redis_leases_lost", "Loads not stored: their lease was gone."),
    _counter("lease_timeouts", "redis_lease_timeouts", "Lease waits that gave up."),
    _counter("invalidations_sent", "redis_invalidations_sent", "Invalidations published."),
    _counter(
        "invalidations_received",
        "redis_invalidations_received",
        "Invalidations of other processes received.",
    ),
    _counter("resyncs", "redis_resyncs", "Local tiers dropped after a lost subscription."),
    _counter("limiter_waits", "redis_limiter_waits", "Rate-limiter reservations that waited."),
    _counter(
        "limiter_wait_seconds",
        "redis_limiter_wait_seconds",
        "Time rate-limiter reservations waited.",
    ),
    _counter("local_only", "redis_local_only", "Values kept out of the shared tier."),
)
_TMDB = (
    _counter("requests", "tmdb_requests", "Calls made to the TMDB client."),
    _counter("upstream_calls", "tmdb_upstream_calls", "HTTP requests sent to TMDB."),
    _counter("cache_hits", "tmdb_cache_hits", "Answers from a fresh cache entry."),
    _counter("stale_served", "tmdb_stale_served", "Answers from a stale entry."),
    _counter("coalesced", "tmdb_coalesced", "Callers that shared another's upstream call."),
    _counter("not_found_cached", "tmdb_not_found_cached", "404s answered from the 404 cache."),
    _counter("retries", "tmdb_retries", "Requests sent again."),
    _counter("rate_limited", "tmdb_rate_limited", "429 responses received."),
    _counter("errors", "tmdb_errors", "Calls that ended in an error."),
)
_LOCK = (
    _gauge("held_keys", "lock_held_keys", "Keys held now."),
    _gauge("waiting_tasks", "lock_waiting_tasks", "Tasks queued for a key now."),
    _counter("acquisitions", "lock_acquisitions", "Successful acquisitions."),
    _counter("contended_acquisitions", "lock_contended_acquisitions", "Acquisitions that queued."),
    _counter("timeouts", "lock_timeouts", "Acquisitions that timed out."),
)
# (section of the snapshot, label, metrics)
_SECTIONS: tuple[tuple[str, str | None, tuple[_Spec, ...]], ...] = (
    ("pool", "pool", _POOL),
    ("caches", "cache", _CACHE),
    ("tmdb", None, _TMDB),
    ("locks", "lock", _LOCK),
    ("redis", None, _REDIS),
)
LATENCY_METRIC: Final = "seerrperf_tmdb_upstream_latency_seconds"
_LATENCY_HELP = "Time TMDB took to answer an HTTP request (each retry counts)."


@dataclass(frozen=True, slots=True)
class _Family:
    spec: _Spec
    label: str | None
    samples: tuple[tuple[str, float], ...]  # (label value, value in base units)


def _rows(section: str, data: Any) -> Mapping[str, Mapping[str, Any]]:
    if section == "pool":
        return {data["name"]: data}
    if section in ("tmdb", "redis"):
        return {"": data}
    if section == "caches":
        return {
            name: {**row, "lookups": row["hits"] + row["stale_hits"] + row["misses"]}
            for name, row in data.items()
        }
    return data  # type: ignore[no-any-return]


class _Sources:
    """What to export, checked once; read at every scrape or flush."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None,
        caches: Caches | None,
        tmdb: Tmdb | None,
        locks: Lock | Mapping[str, Lock] | None,
        redis: RedisBackend | None = None,
    ) -> None:
        self._arguments: dict[str, Any] = {
            "pool": pool,
            "caches": caches,
            "tmdb": tmdb,
            "locks": locks,
            "redis": redis,
        }
        self._tmdb = tmdb
        collect_stats(**self._arguments)  # fail at construction, not at the first scrape

    def read(self) -> tuple[list[_Family], HistogramSnapshot | None]:
        """Return every metric's samples, and the TMDB latency histogram if there is a client."""
        snapshot = collect_stats(**self._arguments)
        families: list[_Family] = []
        for section, label, specs in _SECTIONS:
            if section not in snapshot:
                continue
            rows = _rows(section, snapshot[section])
            for spec in specs:
                samples = tuple(
                    (name, float(row[spec.key]) * spec.scale)
                    for name, row in rows.items()
                    if spec.key in row  # an application's own lock may lack a figure
                )
                if samples:
                    families.append(_Family(spec, label, samples))
        latency = None if self._tmdb is None else upstream_latency(self._tmdb)
        return families, latency


def _le(bound: float) -> str:
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


def _labels(label: str | None) -> list[str]:
    return [label] if label else []


class SeerrperfCollector(Collector):
    """A Prometheus collector for a pool, caches, a TMDB client and locks, in one process.

    Takes the same arguments as :func:`seerrperf.collect_stats`. It reads the
    live objects at scrape time, so nothing goes stale or is counted twice;
    a scrape costs the same however many entries the caches hold. Under
    several worker processes use :class:`PrometheusExporter` instead: this
    collector reports only the process that answers the scrape.

    Args:
        pool: A psycopg_pool pool; metrics labelled ``pool="<name>"``.
        caches: A ``CacheManager``, mapping or caches; labelled ``cache``.
        tmdb: A TMDB client; its upstream latency becomes the histogram
            ``seerrperf_tmdb_upstream_latency_seconds``.
        locks: A lock or a mapping of names to locks; labelled ``lock``.
        redis: A ``RedisBackend`` (by default that of a
            ``CacheManager(shared=backend)`` given as ``caches``): its
            ``seerrperf_redis_*`` metrics.

    Raises:
        ConfigurationError: as :func:`seerrperf.collect_stats`.
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None = None,
        caches: Caches | None = None,
        tmdb: Tmdb | None = None,
        locks: Lock | Mapping[str, Lock] | None = None,
        redis: RedisBackend | None = None,
    ) -> None:
        self._sources = _Sources(pool, caches, tmdb, locks, redis)

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families, read from the live objects."""
        families, latency = self._sources.read()
        for family in families:
            spec, labels = family.spec, _labels(family.label)
            metric: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(spec.name, spec.help, labels=labels)
                if spec.counter
                else GaugeMetricFamily(spec.name, spec.help, labels=labels)
            )
            for label_value, value in family.samples:
                metric.add_metric([label_value] if labels else [], value)
            yield metric
        if latency is not None:
            histogram = HistogramMetricFamily(LATENCY_METRIC, _LATENCY_HELP)
            histogram.add_metric(
                [],
                buckets=[(_le(bound), count) for bound, count in latency.buckets],
                sum_value=latency.sum,
            )
            yield histogram


# --- several processes ---------------------------------------------------------------


class _Mirror:
    """Our figures copied into prometheus_client metrics, whose multiprocess mode
    writes them to one file per process and sums them at scrape time.

    Counters get the increase since the previous push, gauges the current
    level (``livesum``: summed over the live processes). The latency
    histogram is replayed: the observations since the previous push are the
    newest of the histogram's recent window, observed one by one.

    Args:
        registry: Where the metrics are also registered (the arithmetic's
            tests read them there); the multiprocess files need none.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._registry = registry
        self._metrics: dict[str, Counter | Gauge] = {}
        self._counted: dict[tuple[str, str], float] = {}  # counter values pushed
        self._levels: dict[tuple[str, str], float] = {}  # gauge values set
        self._histogram: Histogram | None = None
        self._latency = HistogramSnapshot(buckets=(), count=0, sum=0.0, recent=())

    def forked(self) -> None:
        """This is a new process: its files start empty, so every gauge is set again.

        Counters keep their baselines: the parent pushed what it had counted
        into its own file just before the fork (see :func:`_before_fork`).
        """
        self._levels.clear()

    def _metric(self, family: _Family) -> Counter | Gauge:
        spec = family.spec
        metric = self._metrics.get(spec.name)
        if metric is None:
            labels = _labels(family.label)
            metric = (
                Counter(spec.name, spec.help, labels, registry=self._registry)
                if spec.counter
                else Gauge(
                    spec.name,
                    spec.help,
                    labels,
                    registry=self._registry,
                    multiprocess_mode="livesum",
                )
            )
            self._metrics[spec.name] = metric
        return metric

    def push(self, families: list[_Family], latency: HistogramSnapshot | None) -> None:
        """Bring the files up to ``families`` and ``latency``."""
        for family in families:
            metric = self._metric(family)
            pushed = self._counted if family.spec.counter else self._levels
            for label_value, value in family.samples:
                key = (family.spec.name, label_value)
                before = pushed.get(key)
                if before == value:
                    continue
                child = metric.labels(label_value) if family.label else metric
                if isinstance(child, Counter):
                    # A smaller figure means a new object (a pool re-created): it counts anew.
                    child.inc(value if before is None or value < before else value - before)
                else:
                    child.set(value)
                pushed[key] = value
        if latency is not None:
            self._push_latency(latency)

    def _push_latency(self, latency: HistogramSnapshot) -> None:
        bounds = [bound for bound, _ in latency.buckets[:-1]]
        if self._histogram is None:
            self._histogram = Histogram(
                LATENCY_METRIC, _LATENCY_HELP, buckets=bounds, registry=self._registry
            )
        # A smaller count means a new client: all of its observations are new.
        before = self._latency if latency.count >= self._latency.count else None
        new = latency.count - (before.count if before else 0)
        if new <= 0:
            return
        recent = latency.recent
        if new > len(recent):
            # More new observations than the window keeps (a very long flush
            # interval): the older ones are observed at their bucket's upper
            # bound (+Inf at twice the largest), so the bucket counts stay
            # exact and only the sum is approximate.
            for stand_in, missing in zip(
                [*bounds, 2 * bounds[-1] if bounds else 1.0],
                _older_per_bucket(latency, before),
                strict=True,
            ):
                for _ in range(missing):
                    self._histogram.observe(stand_in)
        for seconds in recent[max(0, len(recent) - new) :]:
            self._histogram.observe(seconds)
        self._latency = latency


def _older_per_bucket(latency: HistogramSnapshot, before: HistogramSnapshot | None) -> list[int]:
    """Per bucket, the new observations that are no longer in the recent window."""
    bounds = [bound for bound, _ in latency.buckets[:-1]]

    def per_bucket(snapshot: HistogramSnapshot | None) -> list[int]:
        if snapshot is None or len(snapshot.buckets) != len(latency.buckets):
            return [0] * len(latency.buckets)
        cumulative = [count for _, count in snapshot.buckets]
        return [count - below for count, below in zip(cumulative, [0, *cumulative], strict=False)]

    in_window = [0] * len(latency.buckets)
    for seconds in latency.recent:
        in_window[bisect.bisect_left(bounds, seconds)] += 1
    return [
        max(0, now - then - window)
        for now, then, window in zip(
            per_bucket(latency), per_bucket(before), in_window, strict=True
        )
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that are gone (uvicorn has no child_exit hook)."""
    own = os.getpid()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = os.path.basename(path).rsplit("_", 1)[1].removesuffix(".db")
        if pid.isdigit() and int(pid) != own and not _alive(int(pid)):
            mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _written(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead process's live gauges, just removed
        return False


class _Fleet(Collector):
    """The whole directory, after this process has copied its figures into it.

    prometheus_client's ``MultiProcessCollector`` fails the whole scrape on a
    file that is still 0 bytes: each process creates its file before sizing
    it, and one killed in between leaves it so for good (prometheus/
    client_python#1199). An empty file holds nothing yet, so it is skipped.
    The collector holds the exporter, so an application that keeps only the
    registry (``make_asgi_app(PrometheusExporter(...).registry)``) keeps it
    working.
    """

    def __init__(self, exporter: PrometheusExporter, directory: str) -> None:
        self._exporter = exporter
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        self._exporter.flush()
        _forget_dead_processes(self._directory)
        files = [f for f in glob.glob(os.path.join(self._directory, "*.db")) if _written(f)]
        merged: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return iter(merged)


# Multiprocess exporters run until closed: each copies its figures at exit and
# around forks, also when the application kept no reference to it.
_EXPORTERS: set[PrometheusExporter] = set()
_EXPORTERS_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def _track(exporter: PrometheusExporter) -> None:
    global _HOOKS_INSTALLED
    with _EXPORTERS_LOCK:
        _EXPORTERS.add(exporter)
        if not _HOOKS_INSTALLED:
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=_after_fork_in_parent,
                after_in_child=_after_fork_in_child,
            )
            atexit.register(_at_exit)
            _HOOKS_INSTALLED = True


def _before_fork() -> None:
    # gunicorn --preload forks workers from a process that may have counted
    # already: it pushes that into its own file, and the children inherit
    # the baselines, so nothing is counted twice. The locks stay held across
    # the fork, so no child inherits an exporter mid-push and none is added
    # or closed meanwhile.
    _EXPORTERS_LOCK.acquire()
    for exporter in _EXPORTERS:
        exporter._before_fork()


def _after_fork_in_parent() -> None:
    for exporter in _EXPORTERS:
        exporter._after_fork(child=False)
    _EXPORTERS_LOCK.release()


def _after_fork_in_child() -> None:
    for exporter in _EXPORTERS:
        exporter._after_fork(child=True)
    _EXPORTERS_LOCK.release()


def _at_exit() -> None:
    with _EXPORTERS_LOCK:
        exporters = list(_EXPORTERS)
    for exporter in exporters:
        exporter._flush_logged()


class PrometheusExporter:
    """The metrics of a pool, caches, a TMDB client and locks, right under any number of processes.

    In one process (``PROMETHEUS_MULTIPROC_DIR`` not set) :attr:`registry`
    holds a :class:`SeerrperfCollector`. When the variable is set -- before
    the processes start, since prometheus_client reads it when first
    imported -- each process copies its figures into prometheus_client's
    multiprocess files: once a second from a background thread, and at every
    scrape for the process answering it, which then reports the whole fleet
    (counters summed over every process that ever ran, gauges over the live
    ones). Nothing is added to the request path; the objects' ``stats()``
    are read from the background thread. Create one exporter per process
    (under gunicorn ``--preload`` the workers inherit it: the background
    thread restarts in each); it runs until :meth:`close`.

    Args:
        pool: A psycopg_pool pool; metrics labelled ``pool="<name>"``.
        caches: A ``CacheManager``, mapping or caches; labelled ``cache``.
        tmdb: A TMDB client.
        locks: A lock or a mapping of names to locks; labelled ``lock``.
        redis: A ``RedisBackend``, as for :class:`SeerrperfCollector`.
        registry: One process only: the registry to add the collector to
            (``prometheus_client.REGISTRY`` to serve your own metrics on the
            same page); by default a new one. In multiprocess mode every
            metric in the directory is served, so this must stay ``None``.
        flush_interval: Seconds between two copies in multiprocess mode;
            ``None`` for none (then call :meth:`flush` yourself). A copy
            costs about a millisecond.

    Raises:
        ConfigurationError: as :func:`seerrperf.collect_stats`; a bad
            ``registry`` or ``flush_interval``; ``PROMETHEUS_MULTIPROC_DIR``
            is not a directory, or was set after prometheus_client was
            imported (its metrics would then not be shared).
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool[Any] | AsyncConnectionPool[Any] | None = None,
        caches: Caches | None = None,
        tmdb: Tmdb | None = None,
        locks: Lock | Mapping[str, Lock] | None = None,
        registry: CollectorRegistry | None = None,
        flush_interval: float | None = 1.0,
        redis: RedisBackend | None = None,
    ) -> None:
        self._interval = _validate.duration(
            "flush_interval", flush_interval, allow_zero=False, allow_none=True
        )
        if registry is not None:
            _validate.instance(
                "registry", registry, CollectorRegistry, "a prometheus_client CollectorRegistry"
            )
        directory = os.environ.get(MULTIPROC_DIR_ENV) or None
        self._directory = directory
        self._mirror: _Mirror | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._failing = False
        self.registry: CollectorRegistry
        """The registry to serve (``make_asgi_app(exporter.registry)``)."""
        if directory is None:
            self.registry = CollectorRegistry() if registry is None else registry
            self.registry.register(
                SeerrperfCollector(pool=pool, caches=caches, tmdb=tmdb, locks=locks, redis=redis)
            )
            return
        if registry is not None:
            raise ConfigurationError(
                f"registry must be None when {MULTIPROC_DIR_ENV} is set: "
                "every metric in that directory is served"
            )
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"{MULTIPROC_DIR_ENV} must name an existing directory, got {directory!r}"
            )
        if values.ValueClass is values.MutexValue:
            raise ConfigurationError(
                f"{MULTIPROC_DIR_ENV} was set after prometheus_client was imported, so its "
                "metrics are not shared: set it in the environment before the process starts"
            )
        self._sources = _Sources(pool, caches, tmdb, locks, redis)
        self._mirror = _Mirror()
        self.registry = CollectorRegistry()
        self.registry.register(_Fleet(self, directory))
        _track(self)
        self._start_flushing()

    def __repr__(self) -> str:
        mode = f"multiprocess {self._directory!r}" if self._directory else "one process"
        return f"<PrometheusExporter {mode}>"

    @property
    def multiprocess(self) -> bool:
        """Whether the exporter reports the fleet (``PROMETHEUS_MULTIPROC_DIR`` was set)."""
        return self._directory is not None

    @property
    def directory(self) -> str | None:
        """The multiprocess directory, ``None`` in one process."""
        return self._directory

    def flush(self) -> None:
        """Copy this process's figures into the multiprocess files now.

        Scrapes, the background thread and the process's exit call it; call
        it yourself for exact figures at a moment of your choosing (with
        ``flush_interval=None``, say). Does nothing in one process.
        """
        if self._mirror is None:
            return
        with self._lock:
            self._push()

    def close(self) -> None:
        """Stop the background thread and copy the figures a last time. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        if self._mirror is not None:
            self._flush_logged()
            with _EXPORTERS_LOCK:
                _EXPORTERS.discard(self)

    def __enter__(self) -> PrometheusExporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _push(self) -> None:
        assert self._mirror is not None
        families, latency = self._sources.read()
        self._mirror.push(families, latency)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            if not self._failing:  # once per run of failures, not once a second
                _log.exception("seerrperf could not copy its metrics for other processes")
            self._failing = True
        else:
            self._failing = False

    def _start_flushing(self) -> None:
        if self._interval is None or self._stop.is_set():
            return
        self._thread = threading.Thread(
            target=self._flush_periodically,
            args=(self._stop, self._interval),
            name="seerrperf-metrics",
            daemon=True,
        )
        self._thread.start()

    def _flush_periodically(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            self._flush_logged()

    def _before_fork(self) -> None:
        self._lock.acquire()
        try:
            self._push()
        except Exception:
            _log.exception("seerrperf could not copy its metrics before a fork")

    def _after_fork(self, *, child: bool) -> None:
        self._lock.release()
        if child:
            assert self._mirror is not None
            self._mirror.forked()
            self._thread = None  # threads do not survive a fork
            self._start_flushing()
