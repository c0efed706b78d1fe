"""PerProcess: one object per process, made once on first use, forgotten by a forked
child, closed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from seerrperf import ConfigurationError
from seerrperf.flask import PerProcess

ROOT = Path(__file__).resolve().parents[3]


class Thing:
    made = 0

    def __init__(self) -> None:
        Thing.made += 1
        self.pid = os.getpid()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_threads_share_one_object_made_once() -> None:
    start = threading.Barrier(16)
    made: list[int] = []

    def factory() -> list[int]:
        made.append(1)
        return made

    holder = PerProcess(factory)
    found: list[object] = []

    def use() -> None:
        start.wait(timeout=10)
        found.append(holder())

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(found) == 16
    assert all(item is made for item in found)
    assert made == [1]
    assert holder.made


def test_a_failing_factory_is_tried_again_and_none_can_be_made() -> None:
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("not yet")

    holder = PerProcess(flaky)
    with pytest.raises(OSError, match="not yet"):
        holder()
    before = holder.made
    assert holder() is None
    after = holder.made
    assert holder() is None
    assert (before, after, len(attempts)) == (False, True, 2)


def test_close_closes_and_the_next_call_makes_anew() -> None:
    closed: list[Thing] = []
    holder = PerProcess(Thing, close=closed.append)
    first = holder()
    assert holder.peek() is first
    holder.close()
    assert closed == [first]
    assert holder.peek() is None
    second = holder()
    assert second is not first
    holder.close()
    holder.close()  # idempotent
    assert closed == [first, second]
    default = PerProcess(Thing)
    thing = default()
    default.close()
    assert thing.closed  # its own close() by default


def test_a_forked_child_makes_its_own_without_closing_the_parents() -> None:
    holder = PerProcess(Thing)
    parent = holder()
    reader, writer = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            mine = holder()
            ok = mine is not parent and mine.pid == os.getpid() and not parent.closed
            os.write(writer, b"ok" if ok else b"no")
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    _, status = os.waitpid(child, 0)
    answer = os.read(reader, 10)
    os.close(reader)
    assert (os.waitstatus_to_exitcode(status), answer) == (0, b"ok")
    assert holder() is parent
    assert not parent.closed
    holder.close()


EXIT_SCRIPT = """
import atexit
log = []
atexit.register(lambda: print(",".join(log)))  # registered first, so it runs last
from seerrperf.flask import PerProcess
holder = PerProcess(lambda: "thing", close=lambda thing: log.append("closed " + thing))
holder()
unused = PerProcess(lambda: "never")
"""


def test_a_process_closes_what_it_made_at_exit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "closed thing"), result.stderr


def test_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="factory"):
        PerProcess(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="close"):
        PerProcess(Thing, close="no")  # type: ignore[arg-type]
