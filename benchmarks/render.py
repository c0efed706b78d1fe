"""Render benchmarks/results/*.json into docs/benchmarks.md with PNG charts.

Run by ``make bench`` after every ``bench_*.py``; also runnable alone to
re-render the last results. Every figure is shown as a ratio against the
baseline measured in the same run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from _common import RESULTS, describe, machine

DOCS = Path(__file__).resolve().parent.parent / "docs"
IMAGES = DOCS / "img"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bar_chart(name: str, title: str, labels: list[str], values: list[float], xlabel: str) -> str:
    IMAGES.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.45 * len(labels)))
    bars = ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:,.2f}x" for v in values[::-1]], padding=3, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.margins(x=0.2)
    fig.tight_layout()
    path = IMAGES / f"{name}.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return f"![{title}](img/{name}.png)"


def pool(data: dict[str, Any]) -> str:
    out = [
        "## Connection pool (`bench_pool.py`)",
        "",
        "Concurrent one-query requests on an embedded PostgreSQL (the mixed load: 5 % of "
        f"them run a 50 ms query), median of {data['params']['rounds']} rounds. Server "
        "connections are the distinct backend processes that answered; *opened* is what "
        "a pool opened during the measured burst. Cold pools start at `min_size`, opened "
        "and ready; warm ones served one unmeasured burst first. Ratios are medians of "
        "per-round ratios (each round ran the strategies side by side). One run, on a "
        "shared machine: runs differ by 10-30 %; [connection pools](pool.md#measured-figures) "
        "gives the medians of several.",
    ]
    labels, values = [], []
    for load in data["loads"]:
        rows = {r["name"]: r for r in load["results"]}
        naive = rows["new connection per request"]
        ratios = load["ratios"]
        out += [
            "",
            f"### {load['load']}",
            "",
            table(
                [
                    "strategy",
                    "throughput vs new connection",
                    "p99 vs new connection",
                    "server connections",
                    "opened",
                ],
                [
                    [
                        r["name"],
                        f"{r['throughput_per_s'] / naive['throughput_per_s']:.2f}x",
                        f"{r['p99_ms'] / naive['p99_ms']:.2f}x",
                        r["server_connections"],
                        r["connections_opened"],
                    ]
                    for r in load["results"]
                ],
            ),
            "",
            "seerrperf against psycopg_pool's defaults: throughput "
            f"{ratios['cold_throughput_vs_default']:.2f}x cold, "
            f"{ratios['warm_throughput_vs_default']:.2f}x warm; p99 "
            f"{ratios['cold_p99_vs_default']:.2f}x cold, "
            f"{ratios['warm_p99_vs_default']:.2f}x warm (lower is better).",
        ]
        for temp in ("cold", "warm"):
            labels.append(f"{load['load']} ({temp})")
            values.append(ratios[f"{temp}_throughput_vs_default"])
    out += [
        "",
        bar_chart(
            "bench_pool",
            "seerrperf throughput vs psycopg_pool defaults (higher is better)",
            labels,
            values,
            "x psycopg_pool defaults",
        ),
    ]
    return "\n".join(out)


def lock(data: dict[str, Any]) -> str:
    unc = data["uncontended_ratio_vs_asyncio_lock"]
    drain = data["drain_ratio_vs_seerrperf"]
    sizes = list(next(iter(drain.values())))
    out = [
        "## Locks (`bench_lock.py`)",
        "",
        "Uncontended acquire/release, as a ratio to a bare `asyncio.Lock` (lower is better):",
        "",
        table(["lock", "x asyncio.Lock"], [[k, f"{v:.2f}x"] for k, v in unc.items()]),
        "",
        "Draining n waiters on one key, time as a ratio to seerrperf's `AsyncLock` "
        "(higher means slower than ours):",
        "",
        table(
            ["lock", *[f"n={int(n):,}" for n in sizes]],
            [[k, *[f"{v[n]:.2f}x" for n in sizes]] for k, v in drain.items()],
        ),
        "",
        "Growth from 10k to 20k waiters (2.0 = linear): "
        + ", ".join(f"{k} {v:.2f}" for k, v in data["drain_growth_10k_to_20k"].items())
        + ".",
        "",
        bar_chart(
            "bench_lock",
            f"Drain time of n={int(sizes[-1]):,} waiters vs seerrperf.AsyncLock",
            list(drain),
            [v[sizes[-1]] for v in drain.values()],
            "x seerrperf.AsyncLock (lower is better)",
        ),
        "",
        "Memory: keys kept after 100,000 acquisitions over 10,000 keys: "
        + ", ".join(f"{k} {v['keys_tracked_after']:,}" for k, v in data["memory"].items())
        + ".",
    ]
    threads = data.get("threads_uncontended_ratio_vs_threading_lock")
    contended = data.get("threads_contended_16_on_1_key")
    if threads and contended:
        bare = next(iter(contended.values()))["ops_per_s"]
        out += [
            "",
            "Threads, uncontended acquire/release, as a ratio to a bare `threading.Lock` "
            "(lower is better):",
            "",
            table(["lock", "x threading.Lock"], [[k, f"{v:.2f}x"] for k, v in threads.items()]),
            "",
            "16 threads on one key: acquisitions per second as a ratio to a bare "
            "`threading.Lock`, the fewest and most one thread got, and the longest wait:",
            "",
            table(
                ["lock", "x threading.Lock", "min share", "max share", "longest wait"],
                [
                    [
                        k,
                        f"{v['ops_per_s'] / bare:.3f}x",
                        f"{v['min_share']:.1%}",
                        f"{v['max_share']:.1%}",
                    ]
                    for k, v in contended.items()
                ],
            ),
        ]
    return "\n".join(out)


def cache(data: dict[str, Any]) -> str:
    base = next(iter(data["hit_path_ns"].values()))
    hits = [[k, f"{v / base:.2f}x"] for k, v in data["hit_path_ns"].items()]
    traces = [
        [
            name,
            t["requests"],
            t["seerr_getRolling"],
            t["seerrperf"],
            f"{data['trace_ratio'][name]:.1f}x",
        ]
        for name, t in data["trace_upstream_calls"].items()
    ]
    out = [
        "## Caches (`bench_cache.py`)",
        "",
        "Hit path, as a ratio to a bare `cachetools.TTLCache[key]` lookup (not thread-safe):",
        "",
        table(["lookup", "x bare TTLCache"], hits),
        "",
        f"Stampede: 1,000 concurrent misses on one key ran the loader "
        f"{data['stampede_loader_calls']['seerrperf']} time(s) with seerrperf and "
        f"{data['stampede_loader_calls']['seerr_style']:,} times with a Seerr-style cache "
        f"({data['stampede_ratio']:,.0f}x fewer).",
        "",
        "Upstream calls on the same access trace, Seerr's `getRolling` rule vs "
        "stale-while-revalidate with one refresh per key:",
        "",
        table(["trace", "requests", "getRolling", "seerrperf", "fewer"], traces),
        "",
    ]
    if "scrape_us" in data:
        scrape = data["scrape_us"]
        out += [
            "Scrapes (`collect_stats`, what `/metrics` and the debug route call), in "
            "microseconds, by entries held: "
            + ", ".join(f"{int(n):,}: {us:,.1f}" for n, us in scrape["collect_stats"].items())
            + f" ({data['scrape_ratio']:.2f}x for 100,000 vs 10 entries; the exact "
            'byte-size walk, `stats(sizes="exact")`, takes '
            + ", ".join(f"{int(n):,}: {us:,.0f}" for n, us in scrape["exact_sizes"].items())
            + ").",
            "",
        ]
    out += [
        bar_chart(
            "bench_cache",
            "Hit path vs a bare cachetools lookup (lower is better)",
            list(data["hit_path_ns"]),
            [v / base for v in data["hit_path_ns"].values()],
            "x bare TTLCache[key]",
        ),
    ]
    return "\n".join(out)


def batch(data: dict[str, Any]) -> str:
    sections = []
    for name, timings in data["seconds"].items():
        ref = min(timings.values()) if "postgres" in name else None
        if ref is None:
            ref = next(v for k, v in timings.items() if k.startswith(("batch_fetch", "asyncio")))
        sections.append(f"**{name}** (time as a ratio to the reference, lower is better)")
        sections.append("")
        sections.append(
            table(["strategy", "x reference"], [[k, f"{v / ref:.2f}x"] for k, v in timings.items()])
        )
        sections.append("")
    jitter = data["seconds"]["latency: 200 items, 10-100 ms each"]
    ref = jitter["batch_fetch(concurrency=10)"]
    return "\n".join(
        [
            "## Batch helpers (`bench_batch.py`)",
            "",
            *sections,
            bar_chart(
                "bench_batch",
                "200 items with 10-100 ms latency: time vs batch_fetch (lower is better)",
                list(jitter),
                [v / ref for v in jitter.values()],
                "x batch_fetch(concurrency=10)",
            ),
        ]
    )


def tmdb(data: dict[str, Any]) -> str:
    rows = data["rows"]
    params = data["params"]
    lim = data["limiter"]
    hits = data.get("hit_path_ns", {})
    ratios = data.get("hit_ratios", {})
    sync_rows = data.get("sync_rows", [])
    out = [
        "## TMDB client (`bench_tmdb.py`)",
        "",
    ]
    if hits:
        out += [
            f"A cache hit, in nanoseconds per call (best of {params.get('rounds', '?')} "
            "interleaved rounds), against the bare cache call on the same key with the same "
            "TTL and stale windows; each ratio is the median of the per-round ratios "
            f"(goal: within {data.get('hit_goal', 1.3)}x):",
            "",
            table(["call", "ns per hit"], [[name, ns] for name, ns in hits.items()]),
            "",
            table(
                ["ratio", "x"],
                [
                    [
                        "AsyncTmdbClient.get_movie / NamedCache.aget_or_set",
                        ratios["async_vs_aget_or_set"],
                    ],
                    ["TmdbClient.get_movie / NamedCache.get_or_set", ratios["sync_vs_get_or_set"]],
                    ["AsyncTmdbClient.get_movie / NamedCache.get", ratios["async_vs_get"]],
                    ["TmdbClient.get_movie / NamedCache.get", ratios["sync_vs_get"]],
                ],
            ),
            "",
        ]
    out += [
        f"{params['lookups']:,} movie lookups over {params['ids']:,} ids (Zipf), "
        f"{params['concurrency']} concurrent tasks, against `FakeTmdb.serve()` on a real socket "
        f"with {params['latency'] * 1000:.0f} ms latency "
        f"({data['distinct_ids']} distinct ids in the trace). Baseline: plain httpx.",
        "",
        _tmdb_rows(rows),
        "",
        f"Limiter alone: {lim['requests']} distinct requests at `max_rps={lim['max_rps']}` "
        f"reached TMDB at {lim['observed_rps']:.1f} requests/s.",
        "",
    ]
    if sync_rows:
        out += [
            f"The same trace from {params.get('threads', 16)} threads, against "
            "`FakeTmdb.serve_in_thread()`. Baseline: a plain `httpx.Client` shared by the threads.",
            "",
            _tmdb_rows(sync_rows),
            "",
        ]
    out.append(
        bar_chart(
            "bench_tmdb",
            "Upstream calls vs plain httpx (lower is better)",
            [r["name"] for r in rows + sync_rows],
            [r["upstream_ratio"] for r in rows + sync_rows],
            "x plain httpx",
        )
    )
    return "\n".join(out)


def _tmdb_rows(rows: list[dict[str, Any]]) -> str:
    return table(
        ["client", "upstream calls", "x baseline", "throughput x baseline"],
        [
            [
                r["name"],
                r["upstream_calls"],
                f"{r['upstream_ratio']:.3f}x",
                f"{r['throughput_ratio']:.1f}x",
            ]
            for r in rows
        ],
    )


def redis_blocks(data: dict[str, Any]) -> str:
    hit, inv = data["shared_hit"], data["invalidation"]
    fleet, lim = data["fleet_single_flight"], data["fleet_limiter"]
    return "\n".join(
        [
            "## Redis building blocks (`bench_redis.py`)",
            "",
            "On an embedded Valkey, loopback. Shared hit, p50, against the least a shared "
            "hit can cost (a plain redis-py `GET` plus `json.loads` of the same 5 KB "
            f"document, {hit['plain_get_p50_us']:.0f} us here):",
            "",
            table(
                ["call", "x plain GET", "round trips"],
                [
                    ["plain GET + json.loads", "1.00x", 1],
                    ["SharedTier.lookup", f"{hit['lookup_x_get']:.2f}x", 1],
                    ["SharedTier.get_or_load (hit)", f"{hit['get_or_load_x_get']:.2f}x", 1],
                    ["SharedTier.get_or_load (miss, load, store)", "", hit["miss_round_trips"]],
                ],
            ),
            "",
            f"Invalidation latency (a delete in one backend heard by another's listener, "
            f"{inv['deletes']} deletes): p50 {inv['p50_ms']:.2f} ms, p99 {inv['p99_ms']:.2f} ms.",
            "",
            table(
                ["4 processes x 20 threads, 50 keys", "loads", "x distinct keys"],
                [
                    [
                        "lookup, load on a miss, set (no lease)",
                        fleet["without_lease_loads"],
                        f"{fleet['loads_x_keys_without_lease']:.2f}x",
                    ],
                    [
                        "get_or_load (fleet lease)",
                        fleet["get_or_load_loads"],
                        f"{fleet['loads_x_keys_get_or_load']:.2f}x",
                    ],
                ],
            ),
            "",
            table(
                [f"4 processes at max_rps={lim['max_rps']}", "busiest second", "x max_rps"],
                [
                    [
                        "one Throttle per process",
                        lim["per_process_busiest_second"],
                        f"{lim['per_process_x_max_rps']:.2f}x",
                    ],
                    [
                        "one RedisRateLimiter",
                        lim["fleet_busiest_second"],
                        f"{lim['fleet_x_max_rps']:.2f}x",
                    ],
                ],
            ),
        ]
    )


def fleet(data: dict[str, Any]) -> str:
    """bench_fleet: per-process caches vs the shared tier, 4 worker processes."""
    p = data["parameters"]
    names = {
        "per_process": "per process",
        "shared": "shared tier",
        "shared_redis_stopped_halfway": "shared tier, Redis stopped halfway",
    }
    rows = [
        [
            names.get(name, name),
            f"{b['upstream_calls']} / {b['distinct_ids']}",
            f"{b['upstream_x_distinct']:.2f}x",
            f"{b['busiest_second']}",
            f"{b['busiest_x_max_rps']:.2f}x",
            b["failed_requests"],
            b["fallbacks"],
        ]
        for name, b in data["builds"].items()
    ]
    inv, hit, local = data["invalidation"], data["shared_hit"], data["local_hit"]
    return "\n".join(
        [
            "## Fleet (`bench_fleet.py`)",
            "",
            f"{p['processes']} worker processes x {p['tasks']} tasks, "
            f"{p['requests_per_process']} Zipf requests each over {p['ids']} ids, FakeTmdb at "
            f"{p['latency_s'] * 1000:.0f} ms, max_rps={p['max_rps']}, real Valkey.",
            "",
            table(
                [
                    "build",
                    "upstream / distinct ids",
                    "ratio",
                    "busiest 1 s",
                    "x max_rps",
                    "failed",
                    "fallbacks",
                ],
                rows,
            ),
            "",
            f"Invalidation across processes: p50 {inv['p50_ms']:.2f} ms, "
            f"p99 {inv['p99_ms']:.2f} ms "
            f"({inv['deletes']} deletes). Shared hit p50: {hit['p50_us']:.0f} us. A local hit "
            f"with a shared tier beneath costs {local['median_round_ratio']:.2f}x one without.",
        ]
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "bench_pool": pool,
    "bench_lock": lock,
    "bench_cache": cache,
    "bench_batch": batch,
    "bench_tmdb": tmdb,
    "bench_redis": redis_blocks,
    "bench_fleet": fleet,
}


def main() -> None:
    parts = [
        "# Benchmarks",
        "",
        "Every figure is a ratio against a baseline measured side by side in the same run "
        "on the same machine; absolute numbers depend on the machine and are in "
        "`benchmarks/results/*.json`. Regenerate this page with `make bench` "
        "(it runs every `benchmarks/bench_*.py`, then `benchmarks/render.py`; "
        "`make bench BENCH=benchmarks/bench_pool.py` runs one).",
        "",
        f"Machine: {describe(machine())}.",
    ]
    for name, render in RENDERERS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            parts += ["", render(json.loads(path.read_text()))]
    (DOCS / "benchmarks.md").write_text("\n".join(parts) + "\n")
    print(f"wrote {DOCS / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
