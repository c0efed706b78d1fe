"""Command line: ``python -m seerrperf health``.

The demo is not part of the package: run it from a checkout with ``make demo``.
"""

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

    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
