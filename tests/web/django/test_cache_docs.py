"""docs/django-cache.md runs as printed: the CACHES setting, the usage block, the metrics block.

They run in a fresh interpreter that configures Django's settings with the
printed ``CACHES`` -- the way a project's ``settings.py`` does -- so that
the global ``django.core.cache.cache`` is the documented backend, and this
process's Django settings (which other tests may configure) stay untouched.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "django-cache.md"
RUN_DEADLINE = 60.0

RUNNER = """
import sys
from django.conf import settings

settings_block, usage_block, metrics_block = sys.argv[1:4]
namespace = {}
exec(settings_block, namespace)
settings.configure(CACHES=namespace["CACHES"])
exec(usage_block, {})
exec(metrics_block, namespace)
import json
print(json.dumps(namespace["snapshot"]["caches"]))
"""


def blocks(heading: str) -> list[str]:
    text = DOC.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return re.findall(r"```python\n(.*?)```", text[start : end if end >= 0 else None], re.S)


def test_the_quick_start_and_the_metrics_block_run_as_printed() -> None:
    settings_block, usage_block, _async_view = blocks("## Quick start")
    (metrics_block,) = blocks("## Statistics and metrics")
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, settings_block, usage_block, metrics_block],
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    printed = lines[0]  # the usage block's print(cache.stats().as_dict())
    assert "'loads': 1" in printed
    assert "'hits': 1" in printed
    caches = json.loads(lines[-1])
    assert [entry["name"] for entry in caches.values()] == ["default"]
    assert next(iter(caches.values()))["keys"] == 2  # the movie and the claim
