"""Fork safety: caches made before a fork (gunicorn --preload, multiprocessing) work in the child.

Each test forks a real child with multiprocessing's ``fork`` context while
another thread of the parent is inside the cache -- holding its lock, or
running a load -- and the child reports what it saw through a pipe.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import multiprocessing
import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from seerrperf import CacheManager, NamedCache

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows"),
    # Python 3.12+ warns on fork() in a threaded process; these tests fork so on purpose.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

CHILD_DEADLINE = 20.0


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child; return what it returned, or raise what it raised."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child(pipe: Connection) -> None:
        # Should the child hang, its stacks reach the test's captured stderr.
        faulthandler.dump_traceback_later(CHILD_DEADLINE / 2, exit=True)
        try:
            pipe.send(("ok", body()))
        except BaseException as exc:  # reported to the parent, which fails the test
            pipe.send(("error", repr(exc)))

    process = context.Process(target=child, args=(sender,), daemon=True)
    process.start()
    sender.close()
    try:
        assert receiver.poll(CHILD_DEADLINE), "the child hung"
        status, value = receiver.recv()
    finally:
        process.join(CHILD_DEADLINE)
        if process.is_alive():
            process.kill()
            process.join(CHILD_DEADLINE)
    assert status == "ok", value
    assert process.exitcode == 0
    return value


def test_a_cache_whose_lock_another_thread_holds_at_fork_works_in_the_child() -> None:
    cache = NamedCache("held", load_timeout=CHILD_DEADLINE)
    cache.set("kept", "from the parent")
    inside = threading.Event()
    release = threading.Event()

    def holding(key: object) -> bool:  # runs under the cache's lock
        inside.set()
        assert release.wait(CHILD_DEADLINE)
        return False

    holder = threading.Thread(target=cache.delete_matching, args=(holding,), daemon=True)
    holder.start()
    try:
        assert inside.wait(CHILD_DEADLINE)

        def use() -> tuple[Any, ...]:
            cache.set("new", "in the child")
            return (
                cache.get("kept"),
                cache.get("new"),
                cache.get_or_set("loaded", lambda: "loaded in the child"),
                cache.stats().keys,
            )

        # The fork waits FORK_LOCK_WAIT for the lock, then goes on without it.
        assert in_child(use) == ("from the parent", "in the child", "loaded in the child", 3)
    finally:
        release.set()
        holder.join(CHILD_DEADLINE)
    assert cache.get("new") is None  # the child's writes stay in the child
    assert cache.stats().keys == 1


def test_a_load_in_flight_at_fork_does_not_hang_the_childs_callers() -> None:
    cache = NamedCache("loading", load_timeout=60)
    entered = threading.Event()
    release = threading.Event()

    def hung() -> str:
        entered.set()
        assert release.wait(CHILD_DEADLINE)
        return "from the parent"

    loader = threading.Thread(target=cache.get_or_set, args=("k", hung), daemon=True)
    loader.start()
    try:
        assert entered.wait(CHILD_DEADLINE)
        assert cache.stats().loading == 1

        def use() -> tuple[Any, ...]:
            loading_at_start = cache.stats().loading
            value = cache.get_or_set("k", lambda: "loaded in the child")  # leads, joins nothing
            return loading_at_start, value, cache.stats().loading

        assert in_child(use) == (0, "loaded in the child", 0)
    finally:
        release.set()
        loader.join(CHILD_DEADLINE)
    assert cache.get("k") == "from the parent"


def test_an_async_load_in_flight_at_fork_does_not_count_or_block_in_the_child() -> None:
    cache = NamedCache("async", max_loading=1, load_timeout=60)
    started = threading.Event()
    release = threading.Event()

    async def hung() -> str:
        started.set()
        await asyncio.to_thread(release.wait, CHILD_DEADLINE)
        return "from the parent"

    outcome: list[object] = []

    def run_parent_loop() -> None:
        try:
            outcome.append(asyncio.run(cache.aget_or_set("k", hung)))
        except BaseException as exc:  # recorded for the test to assert on
            outcome.append(exc)

    parent_loop = threading.Thread(target=run_parent_loop, daemon=True)
    parent_loop.start()
    try:
        assert started.wait(CHILD_DEADLINE)

        async def fresh() -> str:
            return "loaded in the child"

        def use() -> Any:
            # max_loading=1 is taken in the parent; the child starts with none.
            return asyncio.run(cache.aget_or_set("k", fresh))

        assert in_child(use) == "loaded in the child"
    finally:
        release.set()
        parent_loop.join(CHILD_DEADLINE)
    assert outcome == ["from the parent"]
    assert cache.get("k") == "from the parent"


def test_a_manager_created_before_a_fork_works_in_the_child() -> None:
    manager = CacheManager()
    manager.get_cache("tmdb", ttl=60).set("kept", 1)

    def use() -> tuple[Any, ...]:
        fresh = manager.get_cache("new")
        return manager.names(), manager.get_cache("tmdb").get("kept"), fresh.name

    assert in_child(use) == (["tmdb", "new"], 1, "new")
    assert manager.names() == ["tmdb"]


def test_the_fork_hooks_keep_no_cache_alive() -> None:
    cache = NamedCache("short-lived")
    ref = weakref.ref(cache)
    del cache
    gc.collect()
    assert ref() is None
    assert in_child(lambda: "forked") == "forked"  # and a fork after it is collected is fine
