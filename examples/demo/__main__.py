"""``python -m demo`` (from ``examples/``, or with ``examples`` on ``PYTHONPATH``).

``make demo`` runs it: the example app naive vs seerrperf, the connection
pool, a health check, on an embedded PostgreSQL unless ``--dsn`` names one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .run import run_demo


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the demo; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the example app, naive vs seerrperf, and measure the patterns.",
    )
    parser.add_argument("--dsn", help="use this server instead of an embedded one")
    parser.add_argument(
        "--tasks", type=int, help="concurrent requests, pool section (default 200, quick 50)"
    )
    parser.add_argument("--quick", action="store_true", help="a short run (seconds), for CI")
    args = parser.parse_args(argv)
    tasks = args.tasks or (50 if args.quick else 200)
    return run_demo(dsn=args.dsn, tasks=tasks, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
