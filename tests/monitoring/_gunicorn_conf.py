"""The gunicorn hooks docs/monitoring.md asks for, as the fleet test runs them."""

from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import multiprocess


def on_starting(server: Any) -> None:
    # Figures of an earlier run would otherwise add to this one's.
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's counters stay in the totals; its levels leave the sums.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
