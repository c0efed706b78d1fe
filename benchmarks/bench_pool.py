"""Connection pool benchmark: 200 concurrent short queries on a real PostgreSQL.

Compares, in one run on one embedded server:
  (a) a new connection per request (what an app without a pool does),
  (b) psycopg_pool with its own defaults (min_size=max_size=4, 30 s timeout),
  (c) seerrperf's async_pool_factory (max 20, min 2, checked when idle > 1 s),

each pool both cold (opened at min_size, growing one connection at a time
during the burst) and warm (after one unmeasured burst: steady state).

Prints throughput, p50/p99 and server connections (distinct backend pids) per
strategy, as ratios against (a); writes benchmarks/results/bench_pool.json.

    make bench BENCH=benchmarks/bench_pool.py
    PYTHONPATH=examples .venv/bin/python benchmarks/bench_pool.py [--tasks 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import anyio

from _common import write_result
from demo.report import format_table
from demo.workload import WorkloadResult, pool_comparison
from seerrperf.testing import EmbeddedPostgres


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rounds: list[list[WorkloadResult]] = []
    with EmbeddedPostgres() as server:
        anyio.run(pool_comparison, server.dsn, 50)  # warm-up: server caches, imports
        for _ in range(args.rounds):
            cold = anyio.run(pool_comparison, server.dsn, args.tasks)
            warm = anyio.run(partial(pool_comparison, server.dsn, args.tasks, warm=True))
            rounds.append(cold + warm[1:])  # one baseline per round

    names = [r.name for r in rounds[0]]
    summary = []
    for i, name in enumerate(names):
        runs = [rnd[i] for rnd in rounds]
        summary.append(
            {
                "name": name,
                "throughput_per_s": statistics.median(r.throughput for r in runs),
                "p50_ms": statistics.median(r.percentile(50) for r in runs),
                "p99_ms": statistics.median(r.percentile(99) for r in runs),
                "server_connections": max(r.server_connections for r in runs),
                "errors": sum(r.errors for r in runs),
            }
        )
    base = summary[0]
    for row in summary:
        row["throughput_ratio"] = row["throughput_per_s"] / base["throughput_per_s"]
        row["p99_ratio"] = row["p99_ms"] / base["p99_ms"]
        row["connections_ratio"] = row["server_connections"] / base["server_connections"]

    print(f"{args.tasks} concurrent one-query requests, median of {args.rounds} rounds\n")
    print(
        format_table(
            [
                "strategy",
                "req/s",
                "x (a)",
                "p50 ms",
                "p99 ms",
                "p99 x (a)",
                "server conns",
                "errors",
            ],
            [
                [
                    r["name"],
                    r["throughput_per_s"],
                    f"{r['throughput_ratio']:.2f}x",
                    r["p50_ms"],
                    r["p99_ms"],
                    f"{r['p99_ratio']:.2f}x",
                    r["server_connections"],
                    r["errors"],
                ]
                for r in summary
            ],
        )
    )
    write_result(
        "bench_pool",
        {"params": {"tasks": args.tasks, "rounds": args.rounds}, "results": summary},
    )


if __name__ == "__main__":
    main()
