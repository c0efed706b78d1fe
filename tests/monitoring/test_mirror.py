"""The copy into prometheus_client metrics, for any timing of the copies.

The multiprocess tests show the copy through real processes; here its
arithmetic runs in this process (prometheus_client's in-memory values behave
as its files do) against every split of the observations between copies.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from seerrperf._runtime import LatencyHistogram
from seerrperf.prometheus import _CACHE, LATENCY_METRIC, _Family, _Mirror

BOUNDS = (0.1, 1.0, 5.0)
durations = st.one_of(st.sampled_from((0.0, *BOUNDS)), st.floats(0, 30, allow_nan=False))


def _bucket(registry: CollectorRegistry, le: str) -> float:
    value = registry.get_sample_value(f"{LATENCY_METRIC}_bucket", {"le": le})
    assert value is not None
    return value


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.lists(durations, max_size=12), max_size=8),
    window=st.integers(1, 6),
)
def test_the_replayed_histogram_has_the_sources_buckets(
    batches: list[list[float]], window: int
) -> None:
    histogram = LatencyHistogram(buckets=BOUNDS, window=window)
    registry = CollectorRegistry()
    mirror = _Mirror(registry)
    for batch in batches:
        for seconds in batch:
            histogram.observe(seconds)
        mirror.push([], histogram.snapshot())  # a copy after each batch
    source = histogram.snapshot()
    if not source.count:
        return
    for bound, cumulative in source.buckets:
        le = "+Inf" if math.isinf(bound) else str(bound)
        assert _bucket(registry, le) == cumulative
    assert registry.get_sample_value(f"{LATENCY_METRIC}_count") == source.count
    replayed_sum = registry.get_sample_value(f"{LATENCY_METRIC}_sum")
    assert replayed_sum is not None
    if all(len(batch) <= window for batch in batches):
        assert replayed_sum == pytest.approx(source.sum)  # every duration replayed as it was


HITS = next(spec for spec in _CACHE if spec.key == "hits")
KEYS = next(spec for spec in _CACHE if spec.key == "keys")


def test_counters_add_increases_and_a_smaller_figure_counts_anew() -> None:
    registry = CollectorRegistry()
    mirror = _Mirror(registry)
    for hits, keys in ((3, 1), (3, 1), (10, 4), (2, 0), (5, 2)):  # (2, 0): a new cache object
        mirror.push(
            [_Family(HITS, "cache", (("c", float(hits)),)), _Family(KEYS, "cache", (("c", keys),))],
            None,
        )
    assert registry.get_sample_value("seerrperf_cache_hits_total", {"cache": "c"}) == 10 + 5
    assert registry.get_sample_value("seerrperf_cache_keys", {"cache": "c"}) == 2
