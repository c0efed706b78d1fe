"""Pools and fork (gunicorn --preload, multiprocessing): real forked processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

import pytest

from seerrperf import (
    PoolForkedError,
    async_check_database_health,
    async_pool_factory,
    check_database_health,
    pool_factory,
)

pytestmark = pytest.mark.slow  # forks real processes

_fork = multiprocessing.get_context("fork")
DEADLINE = 60.0  # seconds a child may take: forked interpreters start slowly on a busy box


def in_child(target: Callable[[Queue[Any]], None]) -> Any:
    """Run ``target(queue)`` in a forked child; return what it put in the queue."""
    queue: Queue[Any] = _fork.Queue()

    def run() -> None:
        try:
            target(queue)
        except BaseException as exc:  # report anything, never hang the parent
            queue.put(("crashed", f"{type(exc).__name__}: {exc}"))

    child = _fork.Process(target=run)
    child.start()
    try:
        return queue.get(timeout=DEADLINE)
    finally:
        child.join(timeout=DEADLINE)
        if child.is_alive():
            child.kill()
        assert child.exitcode == 0


def backend_pid(pool: Any) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    return int(row[0])


def test_a_pool_opened_before_the_fork_refuses_the_child(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=1, max_size=1) as pool:
        pool.wait()
        before = backend_pid(pool)

        def child(queue: Queue[Any]) -> None:
            try:
                with pool.connection():
                    queue.put(("served", None))
            except PoolForkedError as exc:
                health = check_database_health(pool, timeout=1.0)
                pool.close()  # must leave the parent's session alone
                queue.put(("refused", str(exc), health.error))

        outcome = in_child(child)
        # The parent's connection survived the child (same session, still working).
        assert backend_pid(pool) == before
    assert outcome[0] == "refused", outcome
    assert "was opened in process" in outcome[1]
    assert "Create and open the pool in each worker" in outcome[1]
    assert outcome[2].startswith("PoolForkedError: ")


def test_a_pool_created_but_not_opened_before_the_fork_works_in_the_child(
    postgres_dsn: str,
) -> None:
    pool = pool_factory(postgres_dsn, min_size=1, max_size=1)

    def child(queue: Queue[Any]) -> None:
        with pool:
            queue.put(("served", backend_pid(pool)))

    outcome = in_child(child)
    assert outcome[0] == "served", outcome
    assert outcome[1] > 0
    with pool:  # and the parent can still open its own copy
        assert backend_pid(pool) != outcome[1]


def test_an_async_pool_opened_before_the_fork_refuses_the_child(postgres_dsn: str) -> None:
    pool = async_pool_factory(postgres_dsn, min_size=1, max_size=1)

    async def open_it() -> int:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        return int(row[0])

    async def close_it() -> None:
        await pool.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(open_it())

        def child(queue: Queue[Any]) -> None:
            async def use() -> None:
                try:
                    async with pool.connection():
                        queue.put(("served", None))
                except PoolForkedError as exc:
                    health = await async_check_database_health(pool, timeout=1.0)
                    await pool.close()
                    queue.put(("refused", str(exc), health.error))

            asyncio.run(use())

        outcome = in_child(child)
        assert loop.run_until_complete(open_it()) > 0  # the parent's pool still works
    finally:
        loop.run_until_complete(close_it())
        loop.close()
    assert outcome[0] == "refused", outcome
    assert outcome[2].startswith("PoolForkedError: ")


def test_opening_in_the_child_a_pool_opened_in_the_parent_is_refused(postgres_dsn: str) -> None:
    with pool_factory(postgres_dsn, min_size=0, max_size=1) as pool:

        def child(queue: Queue[Any]) -> None:
            try:
                pool.open()
            except PoolForkedError:
                queue.put(("refused",))
            else:
                queue.put(("opened",))

        assert in_child(child) == ("refused",)
