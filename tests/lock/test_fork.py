"""In-process locks across a real fork: a key held by a thread that does not exist in the child.

gunicorn ``--preload`` and ``multiprocessing``'s ``fork`` start method copy
the parent's memory, locks included, but only the forking thread. A key
another thread held at the fork would stay held forever in the child; the
locks forget such keys there.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import Callable

import pytest

from seerrperf import AsyncLock, KeyedLock, LockStats

DEADLINE = 20.0


def in_forked_child(child: Callable[[], None]) -> None:
    """Run ``child`` in a forked process; fail if it fails, or if it does not end in time."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            child()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child hung")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_keyed_lock_held_by_another_thread_at_fork_is_free_in_the_child() -> None:
    lock = KeyedLock()
    held, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with lock(("movie", 603)):
            held.set()
            leave.wait(DEADLINE)

    def waiter() -> None:
        with lock(("movie", 603), timeout=DEADLINE):
            pass

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert held.wait(DEADLINE)
    threads.append(threading.Thread(target=waiter))
    threads[1].start()
    deadline = time.monotonic() + DEADLINE
    while lock.stats().waiting_tasks != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    with lock("mine"):  # held by the forking thread: still held in the child

        def child() -> None:
            assert lock.locked("mine")
            assert not lock.locked(("movie", 603))
            assert lock.stats() == LockStats(1, 0, 1, 0, 0)
            with lock(("movie", 603), timeout=0):
                pass

        in_forked_child(child)
    leave.set()
    for thread in threads:
        thread.join(DEADLINE)
    # The parent is untouched: its waiter got the key after the holder.
    assert lock.stats() == LockStats(0, 0, 3, 1, 0)


def test_an_async_lock_held_on_another_threads_loop_at_fork_is_free_in_the_child() -> None:
    lock = AsyncLock()
    held, leave = threading.Event(), threading.Event()

    async def hold() -> None:
        async with lock("k"):
            held.set()
            await asyncio.to_thread(leave.wait, DEADLINE)

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    assert held.wait(DEADLINE)

    def child() -> None:
        async def take() -> None:
            async with lock("k", timeout=0):
                pass

        assert not lock.locked("k")
        asyncio.run(take())

    try:
        in_forked_child(child)
    finally:
        leave.set()
        thread.join(DEADLINE)
    assert lock.stats().acquisitions == 1
