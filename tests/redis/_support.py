"""Helpers of the Redis tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds, for ``timeout`` s.

    For states only a poll can see (a counter of another thread); fails the
    test when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        pause.wait(0.005)
