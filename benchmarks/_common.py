"""What every benchmark shares: the machine description and the result writer.

Each ``bench_*.py`` writes its figures to ``benchmarks/results/<name>.json``
through :func:`write_result`, which adds the benchmark's name and the machine
it ran on; ``render.py`` reads them back into ``docs/benchmarks.md``.

The benchmarks run with ``examples`` on ``PYTHONPATH`` (``make bench`` sets
it), so that they can reuse the demo's workload and tables.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """The machine and interpreter a benchmark runs on: absolute figures depend on them."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def describe(info: Mapping[str, Any]) -> str:
    """One line for a :func:`machine` description, for reports."""
    return (
        f"{info['machine']}, {info['cpus']} cores, {info['implementation']} "
        f"{info['python']}, {info['system']}"
    )


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``data`` to ``benchmarks/results/<name>.json``, with the name and the machine.

    Args:
        name: The benchmark, as its file is named (``"bench_pool"``).
        data: Its parameters and figures; JSON-serialisable.

    Returns:
        The path written.
    """
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine(), **data}
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path
