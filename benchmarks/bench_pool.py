"""Connection pool benchmark: concurrent short queries on a real PostgreSQL.

Compares, in one run on one embedded server:
  (a) a new connection per request (what an app without a pool does),
  (b) psycopg_pool with its own defaults (min_size=max_size=4, grows never),
  (c) seerrperf's async_pool_factory (min 2, max 20, grows by its rule),

under three loads: 200 and 1,000 concurrent one-query requests, and 200
requests of which 5 % run a 50 ms query (mixed). Each pool is measured cold
(opened and ready at min_size, as after an app's startup) and warm (after one
unmeasured burst of the same load). (b) and (c) alternate which runs first.

Prints, per load, the median over the rounds of throughput, p50/p99 and the
server connections (distinct backend pids answering; for the pools also the
connections opened during the measured burst), and the medians of the
per-round ratios (c)/(b) and (c)/(a); writes benchmarks/results/bench_pool.json.

    make bench BENCH=benchmarks/bench_pool.py
    PYTHONPATH=examples .venv/bin/python benchmarks/bench_pool.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Any

import anyio

from _common import write_result
from demo.report import format_table
from demo.workload import WorkloadResult, pool_comparison
from seerrperf.testing import EmbeddedPostgres

LOADS = (("200 short", 200, False), ("1,000 short", 1000, False), ("200 mixed", 200, True))
NAIVE, DEFAULT, OURS = "new connection per request", "psycopg_pool defaults", "seerrperf"


def _round(dsn: str, tasks: int, mixed: bool, default_first: bool) -> dict[str, WorkloadResult]:
    naive, default, ours = anyio.run(
        partial(pool_comparison, dsn, tasks, mixed=mixed, default_first=default_first)
    )
    warm_default, warm_ours = anyio.run(
        partial(
            pool_comparison,
            dsn,
            tasks,
            mixed=mixed,
            warm=True,
            include_new_connection=False,
            default_first=default_first,
        )
    )
    return {
        NAIVE: naive,
        DEFAULT: default,
        OURS: ours,
        f"{DEFAULT} (warm)": warm_default,
        f"{OURS} (warm)": warm_ours,
    }


def _summary(rounds: list[dict[str, WorkloadResult]]) -> list[dict[str, Any]]:
    rows = []
    for name in rounds[0]:
        runs = [rnd[name] for rnd in rounds]
        rows.append(
            {
                "name": name,
                "throughput_per_s": statistics.median(r.throughput for r in runs),
                "p50_ms": statistics.median(r.percentile(50) for r in runs),
                "p99_ms": statistics.median(r.percentile(99) for r in runs),
                "server_connections": max(r.server_connections for r in runs),
                "connections_opened": statistics.median(r.connections_opened for r in runs),
                "errors": sum(r.errors for r in runs),
            }
        )
    return rows


def _ratios(rounds: list[dict[str, WorkloadResult]]) -> dict[str, float]:
    """Medians of per-round ratios: each round's pools ran side by side."""

    def median_of(f: Any) -> float:
        return statistics.median(f(rnd) for rnd in rounds)

    out = {}
    for warm in ("", " (warm)"):
        ours, default = f"{OURS}{warm}", f"{DEFAULT}{warm}"
        key = "warm" if warm else "cold"
        out[f"{key}_throughput_vs_default"] = median_of(
            lambda r, o=ours, d=default: r[o].throughput / r[d].throughput
        )
        out[f"{key}_p99_vs_default"] = median_of(
            lambda r, o=ours, d=default: r[o].percentile(99) / r[d].percentile(99)
        )
        out[f"{key}_throughput_vs_new_connection"] = median_of(
            lambda r, o=ours: r[o].throughput / r[NAIVE].throughput
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    per_load: dict[str, list[dict[str, WorkloadResult]]] = {label: [] for label, _, _ in LOADS}
    # Enough server slots for 1,000 concurrent connect-per-request clients.
    with EmbeddedPostgres(settings={"max_connections": "1100"}) as server:
        anyio.run(pool_comparison, server.dsn, 50)  # warm-up: server caches, imports
        for i in range(args.rounds):
            for label, tasks, mixed in LOADS:
                per_load[label].append(_round(server.dsn, tasks, mixed, default_first=i % 2 == 0))

    results = []
    for label, _, _ in LOADS:
        rows, ratios = _summary(per_load[label]), _ratios(per_load[label])
        results.append({"load": label, "results": rows, "ratios": ratios})
        print(f"\n{label}: median of {args.rounds} rounds\n")
        print(
            format_table(
                ["strategy", "req/s", "p50 ms", "p99 ms", "server conns", "opened", "errors"],
                [
                    [
                        r["name"],
                        r["throughput_per_s"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["server_connections"],
                        r["connections_opened"],
                        r["errors"],
                    ]
                    for r in rows
                ],
            )
        )
        print(
            "   seerrperf vs psycopg_pool defaults: throughput "
            f"{ratios['cold_throughput_vs_default']:.2f}x cold, "
            f"{ratios['warm_throughput_vs_default']:.2f}x warm; p99 "
            f"{ratios['cold_p99_vs_default']:.2f}x cold, {ratios['warm_p99_vs_default']:.2f}x "
            "warm (lower is better); vs a new connection per request: throughput "
            f"{ratios['cold_throughput_vs_new_connection']:.1f}x"
        )
    write_result("bench_pool", {"params": {"rounds": args.rounds}, "loads": results})


if __name__ == "__main__":
    main()
