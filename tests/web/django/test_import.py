"""Importing seerrperf never imports Django; seerrperf.django does, and opens nothing."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import seerrperf, seerrperf.prometheus, seerrperf.flask
assert "django" not in sys.modules, "framework imported"
import seerrperf.django
assert "django" in sys.modules and "health_check" not in sys.modules
print("ok")
"""


def test_seerrperf_imports_no_django_until_seerrperf_django_is_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_django_all_is_pinned_and_documented() -> None:
    import seerrperf.django

    assert seerrperf.django.__all__ == [
        "SETTING",
        "DjangoAdvisoryLock",
        "DjangoConfig",
        "Lock",
        "PerProcess",
        "SeerrperfMiddleware",
        "caches",
        "check_health",
        "classify_django_outage",
        "close",
        "config",
        "database_options",
        "guard_pool",
        "hold",
        "json_response",
        "lock",
        "problem_response",
        "stats",
        "tmdb",
    ]
    for name in seerrperf.django.__all__:
        if name not in ("SETTING", "Lock"):
            assert getattr(seerrperf.django, name).__doc__, name
