"""gunicorn hooks for Prometheus's multiprocess mode (docs/monitoring.md).

``gunicorn -c django_app/gunicorn_conf.py django_app.wsgi`` with
``PROMETHEUS_MULTIPROC_DIR`` set to an empty directory.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import multiprocess


def on_starting(server: Any) -> None:
    # Figures of an earlier run would otherwise add to this one's.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's counters stay in the totals; its levels leave the sums.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
