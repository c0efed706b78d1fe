"""One driver for both advisory locks, so each behaviour is written once and run on both.

``SyncTwin`` calls :class:`PgAdvisoryLock` directly. ``AsyncTwin`` runs
:class:`AsyncPgAdvisoryLock` on an event loop in a background thread (an
anyio blocking portal) and drives it from the test's threads, so a test that
starts 20 threads contending for a key starts 20 tasks on that loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import psycopg
from anyio.from_thread import BlockingPortal
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from seerrperf import AsyncPgAdvisoryLock, PgAdvisoryLock, async_pool_factory, pool_factory

Rows = list[tuple[Any, ...]]


class Twin(Protocol):
    kind: str

    def pool(self, dsn: str, **overrides: Any) -> contextlib.AbstractContextManager[Any]: ...
    def lock(self, pool: Any, **kwargs: Any) -> Any: ...
    def hold(
        self, lock: Any, key: object, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[Any]: ...
    def run(self, conn: Any, query: Any, params: Any = None) -> Rows: ...
    def pool_stats(self, pool: Any) -> dict[str, int]: ...


class SyncTwin:
    kind = "sync"

    @contextlib.contextmanager
    def pool(self, dsn: str, **overrides: Any) -> Iterator[ConnectionPool[Any]]:
        with pool_factory(dsn, **overrides) as pool:
            pool.wait(10)
            yield pool

    def lock(self, pool: Any, **kwargs: Any) -> PgAdvisoryLock:
        return PgAdvisoryLock(pool, **kwargs)

    def hold(
        self, lock: Any, key: object, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[Any]:
        assert isinstance(lock, PgAdvisoryLock)
        return lock(key, timeout=timeout)

    def run(self, conn: Any, query: Any, params: Any = None) -> Rows:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    def pool_stats(self, pool: Any) -> dict[str, int]:
        return dict(pool.get_stats())


class AsyncTwin:
    kind = "async"

    def __init__(self, portal: BlockingPortal) -> None:
        self.portal = portal

    @contextlib.contextmanager
    def pool(self, dsn: str, **overrides: Any) -> Iterator[AsyncConnectionPool[Any]]:
        with self.portal.wrap_async_context_manager(async_pool_factory(dsn, **overrides)) as pool:
            self.portal.call(pool.wait, 10)
            yield pool

    def lock(self, pool: Any, **kwargs: Any) -> AsyncPgAdvisoryLock:
        return AsyncPgAdvisoryLock(pool, **kwargs)

    def hold(
        self, lock: Any, key: object, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[Any]:
        assert isinstance(lock, AsyncPgAdvisoryLock)
        return self.portal.wrap_async_context_manager(lock(key, timeout=timeout))

    def run(self, conn: Any, query: Any, params: Any = None) -> Rows:
        async def run() -> Rows:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

        return self.portal.call(run)

    def pool_stats(self, pool: Any) -> dict[str, int]:
        return dict(pool.get_stats())


def advisory_locks_held(dsn: str, lock_id: int, *, granted: bool = True) -> int:
    """How many sessions hold (or wait for) the advisory lock ``lock_id``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = %s"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (granted, (lock_id >> 32) & 0xFFFFFFFF, lock_id & 0xFFFFFFFF),
        ).fetchone()
    assert row is not None
    return int(row[0])
