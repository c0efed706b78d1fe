"""One worker process of the multi-process lock tests (runs in a spawned process).

Each process runs ``TASKS`` tasks (or threads) that all create "the request
for movie 603" by check-then-insert on a table without a unique index, under
an :class:`AsyncPgAdvisoryLock` (``"async"``), a sync :class:`PgAdvisoryLock`
on threads (``"sync"``), or only a per-process :class:`AsyncLock`
(``"local"``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from psycopg import sql

from seerrperf import (
    AsyncLock,
    AsyncPgAdvisoryLock,
    PgAdvisoryLock,
    async_pool_factory,
    pool_factory,
)

PROCESSES = 4
TASKS = 25
KEY = ("movie", 603)


def create_table_sql(name: str) -> sql.Composed:
    """A request table with no unique index: only a lock prevents duplicates."""
    return sql.SQL(
        "CREATE TABLE {} (id bigserial PRIMARY KEY, media_type text NOT NULL,"
        " tmdb_id integer NOT NULL, pid integer NOT NULL)"
    ).format(sql.Identifier(name))


async def create_request(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    tmdb_id: int,
    between: Callable[[], Awaitable[None]] | None = None,
) -> bool:
    """Seerr's request creation: insert unless an active request exists."""
    ident = sql.Identifier(table)
    cur = await conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE media_type = 'movie' AND tmdb_id = %s").format(ident),
        (tmdb_id,),
    )
    if await cur.fetchone() is not None:
        return False
    if between is not None:
        await between()
    await conn.execute(
        sql.SQL("INSERT INTO {} (media_type, tmdb_id, pid) VALUES ('movie', %s, %s)").format(ident),
        (tmdb_id, os.getpid()),
    )
    return True


def create_request_sync(
    conn: psycopg.Connection[Any], table: str, tmdb_id: int, between: Callable[[], None]
) -> bool:
    """The sync twin of :func:`create_request`."""
    ident = sql.Identifier(table)
    cur = conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE media_type = 'movie' AND tmdb_id = %s").format(ident),
        (tmdb_id,),
    )
    if cur.fetchone() is not None:
        return False
    between()
    conn.execute(
        sql.SQL("INSERT INTO {} (media_type, tmdb_id, pid) VALUES ('movie', %s, %s)").format(ident),
        (tmdb_id, os.getpid()),
    )
    return True


def main(
    dsn: str,
    table: str,
    mode: str,
    start: Barrier,
    inside: Barrier,
    window: float,
    results: Queue[dict[str, Any]],
) -> None:
    """Run the tasks and put a report on ``results``.

    ``start`` lines the processes up so they contend from the first moment.
    The first critical section of each process that finds no request waits
    up to ``window`` seconds at ``inside`` between its check and its insert:
    the barrier only completes when every process is inside its critical
    section at once. ``met_others_inside`` reports the outcome (``None``: the
    process always found the request).
    """
    if mode == "sync":
        results.put(_sync_main(dsn, table, start, inside, window))
    else:
        results.put(anyio.run(_main, dsn, table, mode == "async", start, inside, window))


def _sync_main(
    dsn: str, table: str, start: Barrier, inside: Barrier, window: float
) -> dict[str, Any]:
    met_others_inside: bool | None = None
    inserted = 0
    count = threading.Lock()

    def wait_inside() -> None:
        nonlocal met_others_inside
        with count:
            first = met_others_inside is None
            if first:
                met_others_inside = False
        if first:
            try:
                inside.wait(window)
                met_others_inside = True
            except threading.BrokenBarrierError:
                pass

    with pool_factory(dsn, min_size=1, max_size=4) as pool:
        lock = PgAdvisoryLock(pool)

        def one() -> None:
            nonlocal inserted
            with lock(KEY, timeout=60) as conn:
                made = create_request_sync(conn, table, KEY[1], wait_inside)
            with count:
                inserted += made

        start.wait(60)
        threads = [threading.Thread(target=one) for _ in range(TASKS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    return {
        "inserted": inserted,
        "met_others_inside": met_others_inside,
        "acquisitions": lock.stats().acquisitions,
    }


async def _main(
    dsn: str, table: str, advisory: bool, start: Barrier, inside: Barrier, window: float
) -> dict[str, Any]:
    met_others_inside: bool | None = None
    inserted = 0

    async def wait_inside() -> None:
        nonlocal met_others_inside
        if met_others_inside is None:
            try:
                await anyio.to_thread.run_sync(inside.wait, window)
                met_others_inside = True
            except threading.BrokenBarrierError:
                met_others_inside = False

    async with async_pool_factory(dsn, min_size=1, max_size=4) as pool:
        lock = AsyncPgAdvisoryLock(pool) if advisory else AsyncLock()

        async def one() -> None:
            nonlocal inserted
            if isinstance(lock, AsyncPgAdvisoryLock):
                async with lock(KEY, timeout=60) as conn:
                    inserted += await create_request(conn, table, KEY[1], wait_inside)
            else:
                async with lock(KEY, timeout=60), pool.connection() as conn:
                    inserted += await create_request(conn, table, KEY[1], wait_inside)

        await anyio.to_thread.run_sync(start.wait, 60)
        async with anyio.create_task_group() as tg:
            for _ in range(TASKS):
                tg.start_soon(one)
    return {
        "inserted": inserted,
        "met_others_inside": met_others_inside,
        "acquisitions": lock.stats().acquisitions,
    }
