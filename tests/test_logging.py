"""The seerrperf logger follows the library convention: silent until the app configures logging."""

from __future__ import annotations

import logging
import subprocess
import sys

import seerrperf


def test_the_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger(seerrperf.__name__).handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_a_warning_without_logging_config_prints_nothing() -> None:
    # A fresh interpreter: pytest's own logging setup would hide the last-resort handler.
    code = "import logging, seerrperf; logging.getLogger('seerrperf.pool').warning('pool down')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == ""
