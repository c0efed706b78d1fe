"""Command line: ``python -m seerrperf {health,demo}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import ConfigurationError


def _health(args: argparse.Namespace) -> int:
    from ._pg import check_database_health, health_report, pool_factory

    pool = pool_factory(
        args.dsn, min_size=1, max_size=1, timeout=args.timeout, application_name="seerrperf-health"
    )
    pool.open(wait=False)
    try:
        report = health_report(check_database_health(pool, timeout=args.timeout))
    finally:
        pool.close(timeout=1.0)
    print(report.json())
    return 0 if report.status_code == 200 else 1


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    tasks = args.tasks or (50 if args.quick else 200)
    return run_demo(dsn=args.dsn, tasks=tasks, quick=args.quick)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m seerrperf")
    sub = parser.add_subparsers(dest="command", required=True)

    health = sub.add_parser(
        "health", help="check the database; print application/health+json; exit 0 on pass"
    )
    health.add_argument("--dsn", help="PostgreSQL DSN (default: $DATABASE_URL)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    health.set_defaults(run=_health)

    demo = sub.add_parser(
        "demo", help="run the example app, naive vs seerrperf, and measure the patterns"
    )
    demo.add_argument("--dsn", help="use this server instead of an embedded one")
    demo.add_argument(
        "--tasks", type=int, help="concurrent requests, pool section (default 200, quick 50)"
    )
    demo.add_argument("--quick", action="store_true", help="a short run (seconds), for CI")
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
