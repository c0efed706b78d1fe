"""A fair per-key lock across processes and hosts: PostgreSQL transaction-level advisory locks."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Concatenate, ParamSpec, TypeVar

import anyio
import anyio.lowlevel
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from seerrperf import _validate
from seerrperf._errors import LockTimeout
from seerrperf._keys import encode_key, frame
from seerrperf._lock import AsyncLock, LockStats, warn_statistics_renamed

from .pool import AsyncConnection

__all__ = ["PgAdvisoryLock"]

P = ParamSpec("P")
T = TypeVar("T")


def _advisory_key(namespace: str, key: object) -> int:
    # Python's hash() is randomised per process and PostgreSQL's hashtext()
    # may change between versions: a digest of a canonical encoding is neither.
    payload = frame(b"n", namespace.encode("utf-8", "surrogatepass")) + encode_key(
        key, "an advisory-lock key"
    )
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_LOCK = "SELECT pg_advisory_xact_lock({})"
# The block's own statements must run with the session's lock_timeout, not
# with what was left of ours: save it in a transaction-local setting, restore it.
_LOCK_WITH_TIMEOUT = """\
SELECT set_config('seerrperf.lock_timeout', current_setting('lock_timeout'), true);
SET LOCAL lock_timeout = {};
SELECT pg_advisory_xact_lock({});
SELECT set_config('lock_timeout', current_setting('seerrperf.lock_timeout'), true)"""
_MIN_CHECKOUT = 0.01
_CLEANUP_TIMEOUT = 5.0  # seconds for a rollback or a server-side cancel


class PgAdvisoryLock:
    """A fair per-key lock that holds across processes and hosts, in PostgreSQL.

    ::

        adv = PgAdvisoryLock(pool)

        async with adv(("movie", 603), timeout=2.0) as conn:
            cur = await conn.execute("SELECT 1 FROM request WHERE ...")
            if await cur.fetchone() is None:
                await conn.execute("INSERT INTO request ...")

    Inside the block the key's ``pg_advisory_xact_lock`` is held in an open
    transaction on a pooled connection, which the block receives: the check
    and the insert run in that transaction, which commits when the block
    ends normally and rolls back when it raises; the advisory lock is
    released with it. Transaction-level locks also work behind PgBouncer in
    transaction pooling mode.

    Tasks of one process first queue on an in-process :class:`AsyncLock`,
    so only the one at the head of the queue holds a pool connection while
    it waits for other processes.

    Args:
        pool: An open ``psycopg_pool.AsyncConnectionPool`` (asyncio only).
        namespace: Mixed into every key's id, so applications sharing a
            database do not block each other.

    Raises:
        ConfigurationError: ``pool`` is not an ``AsyncConnectionPool`` or
            ``namespace`` is not a non-empty printable string.
    """

    __slots__ = ("_acquisitions", "_local", "_namespace", "_pool", "_timeouts")

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection], *, namespace: str = "seerrperf"
    ) -> None:
        self._pool = _validate.instance(
            "pool", pool, AsyncConnectionPool, "a psycopg_pool.AsyncConnectionPool"
        )
        self._namespace = _validate.name("namespace", namespace)
        self._local = AsyncLock()
        self._acquisitions = 0
        self._timeouts = 0  # in the database; the local lock counts its own

    def advisory_key(self, key: object) -> int:
        """Return the signed 64-bit advisory-lock id of ``key``.

        The id is the first 8 bytes of BLAKE2b over the namespace and a
        canonical encoding of the key: the same in every process, machine and
        release. In ``pg_locks`` it shows as ``classid`` (high 32 bits) and
        ``objid`` (low 32 bits) with ``objsubid = 1``.

        Raises:
            ConfigurationError: ``key`` is not a str, int, bytes, bool, None or
                a tuple of those.
        """
        return _advisory_key(self._namespace, key)

    def __call__(
        self, key: object, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """Return an async context manager that holds ``key`` and yields the connection.

        Args:
            key: A str, int, bytes, bool, None or a (nested) tuple of those,
                e.g. ``("movie", 603)``.
            timeout: Seconds to wait in all (for this process's queue, a pool
                connection and the database lock); ``None`` waits as long as
                it takes (the pool's checkout timeout and the server's
                ``statement_timeout`` still apply).

        Returns:
            The context manager (``async with adv(key) as conn: ...``).

        Raises:
            ConfigurationError: ``key`` has another type, or ``timeout`` is
                negative or not a finite number.
        """
        _validate.duration("timeout", timeout, allow_none=True)
        return self._hold(self.advisory_key(key), timeout)

    async def dispatch(
        self,
        key: object,
        fn: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await fn(conn, *args, **kwargs)`` while holding ``key``.

        ``conn`` is the connection holding the lock, inside its transaction.

        Args:
            key: The key to hold, as for ``adv(key)``.
            fn: A coroutine function taking the connection first.
            *args: Further positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returns.

        Raises:
            ConfigurationError: ``key`` has an unsupported type or ``fn``
                cannot be called.
            RuntimeError: The current task already holds ``key``.
        """
        _validate.function("fn", fn, "a coroutine function")
        async with self(key) as conn:
            return await fn(conn, *args, **kwargs)

    def locked(self, key: object) -> bool:
        """Return whether a task of this process holds or is acquiring ``key``."""
        return self._local.locked(self.advisory_key(key))

    def __len__(self) -> int:
        """Number of keys this process currently holds or waits on."""
        return len(self._local)

    def stats(self) -> LockStats:
        """Return this process's :class:`~seerrperf.LockStats`.

        ``held_keys`` and ``waiting_tasks`` are this process's;
        ``acquisitions`` counts advisory locks obtained, ``contended_acquisitions``
        those that queued behind another task of this process, and ``timeouts``
        both kinds of wait that gave up.
        """
        local = self._local.stats()
        return dataclasses.replace(
            local, acquisitions=self._acquisitions, timeouts=local.timeouts + self._timeouts
        )

    def statistics(self) -> LockStats:
        """Deprecated alias of :meth:`stats`, removed in the next release."""
        warn_statistics_renamed()
        return self.stats()

    def __repr__(self) -> str:
        return f"<PgAdvisoryLock namespace={self._namespace!r} held={len(self._local)}>"

    @asynccontextmanager
    async def _hold(self, lock_id: int, timeout: float | None) -> AsyncIterator[AsyncConnection]:
        deadline = None if timeout is None else anyio.current_time() + timeout
        async with self._local(lock_id, timeout=timeout):
            checkout = self._pool.timeout
            ours_binds = False  # the caller's deadline, not the pool's timeout, limits the wait
            if deadline is not None and deadline - anyio.current_time() < checkout:
                # psycopg_pool refuses a zero wait even when connections are idle.
                checkout = max(deadline - anyio.current_time(), _MIN_CHECKOUT)
                ours_binds = True
            entered = False
            try:
                async with self._pool.connection(timeout=checkout) as conn:
                    entered = True
                    transaction = conn.transaction()
                    await transaction.__aenter__()
                    try:
                        await self._lock_in_transaction(conn, lock_id, deadline)
                        self._acquisitions += 1
                        yield conn
                    except BaseException as exc:
                        # Shielded: an interrupted rollback makes psycopg close the
                        # connection. Bounded: a hung server must not hang us.
                        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                            await transaction.__aexit__(type(exc), exc, exc.__traceback__)
                        raise
                    await transaction.__aexit__(None, None, None)
            except PoolTimeout as exc:
                if entered or not ours_binds:
                    raise
                self._timeouts += 1
                raise LockTimeout("no pooled connection free within the lock's timeout") from exc

    async def _lock_in_transaction(
        self, conn: AsyncConnection, lock_id: int, deadline: float | None
    ) -> None:
        if deadline is None:
            query = sql.SQL(_LOCK).format(sql.Literal(lock_id))
        else:
            # lock_timeout = 0 would mean "wait forever": 1 ms is the floor.
            ms = max(1, round((deadline - anyio.current_time()) * 1000))
            query = sql.SQL(_LOCK_WITH_TIMEOUT).format(sql.Literal(f"{ms}ms"), sql.Literal(lock_id))
        try:
            await _execute_cancellable(conn, query)
        except psycopg.errors.LockNotAvailable as exc:
            self._timeouts += 1
            raise LockTimeout("advisory lock not acquired within the timeout") from exc


async def _execute_cancellable(conn: AsyncConnection, query: sql.Composed) -> None:
    """Run ``query``; if the caller is cancelled meanwhile, cancel it in the server first.

    psycopg answers a cancellation by cancelling the query in the server, but
    anyio repeats the cancellation while psycopg waits for that, and psycopg
    then closes the connection instead: its server process would stay queued
    for the advisory lock. So the query runs shielded, and a sibling task
    turns the caller's cancellation into one server-side cancel.
    """
    running = True
    relayed = False

    async def relay_cancellation() -> None:
        nonlocal relayed
        try:
            await anyio.sleep_forever()
        finally:
            if running:
                relayed = True
                with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                    await conn.cancel_safe(timeout=_CLEANUP_TIMEOUT)

    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay_cancellation)
        try:
            with anyio.CancelScope(shield=True):
                # Literals, no parameters: one round trip for all statements.
                await conn.execute(query)
        except Exception as exc:  # raised below, not wrapped in an ExceptionGroup
            error = exc
        finally:
            running = False
            tg.cancel_scope.cancel()
    # A relayed cancel fails the query with QueryCanceled: that one is ours.
    if error is not None and not (relayed and isinstance(error, psycopg.errors.QueryCanceled)):
        raise error
    # The caller's cancellation, now that the server has let go.
    await anyio.lowlevel.checkpoint_if_cancelled()
