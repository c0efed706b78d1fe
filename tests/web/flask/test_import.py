"""Importing seerrperf never imports Flask; importing seerrperf.flask does."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import seerrperf, seerrperf.prometheus
assert "flask" not in sys.modules and "werkzeug" not in sys.modules, "framework imported"
import seerrperf.flask
assert "flask" in sys.modules
print("ok")
"""


def test_seerrperf_imports_no_flask_until_seerrperf_flask_is_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr
