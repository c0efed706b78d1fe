"""Fair per-key locks across processes and hosts: PostgreSQL transaction-level advisory locks.

:class:`PgAdvisoryLock` (sync, on a ``ConnectionPool``) and
:class:`AsyncPgAdvisoryLock` (on an ``AsyncConnectionPool``) share everything
that does no I/O -- the key ids, the SQL, the deadline plan, the counters,
and the decision whether a block's transaction can still commit -- and
differ only in how they wait: threads queue on a :class:`KeyedLock`, tasks on
an :class:`AsyncLock`, before the one at the head of the queue takes a pooled
connection and the lock in the database.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.lowlevel
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, LockLost, LockTimeout
from seerrperf._keys import encode_key, frame
from seerrperf._locks import AsyncLock, KeyedLock, LockStats, waited, warn_statistics_renamed

from .pool import AsyncConnection, SyncConnection

__all__ = ["AsyncPgAdvisoryLock", "PgAdvisoryLock"]

P = ParamSpec("P")
T = TypeVar("T")


# --- key ids: the same in every process, machine and release ---------------------------


def _advisory_key(namespace: str, key: object) -> int:
    # Python's hash() is randomised per process and PostgreSQL's hashtext()
    # may change between versions: a digest of a canonical encoding is neither.
    payload = frame(b"n", namespace.encode("utf-8", "surrogatepass")) + encode_key(
        key, "an advisory-lock key"
    )
    digest = hashlib.blake2b(payload, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# --- the SQL and the deadline plan ----------------------------------------------------------

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


def _lock_query(lock_id: int, remaining: float | None) -> sql.Composed:
    if remaining is None:
        return sql.SQL(_LOCK).format(sql.Literal(lock_id))
    # lock_timeout = 0 would mean "wait forever": 1 ms is the floor.
    ms = max(1, round(remaining * 1000))
    return sql.SQL(_LOCK_WITH_TIMEOUT).format(sql.Literal(f"{ms}ms"), sql.Literal(lock_id))


def _checkout_timeout(pool_timeout: float, remaining: float | None) -> tuple[float, bool]:
    """Return the checkout timeout, and whether the caller's deadline (not the pool's) sets it."""
    if remaining is not None and remaining < pool_timeout:
        # psycopg_pool refuses a zero wait even when connections are idle.
        return max(remaining, _MIN_CHECKOUT), True
    return pool_timeout, False


# --- what a holder can know about its transaction -------------------------------------------

_ABORTED = (
    "a statement in the block failed and the block carried on: the transaction is aborted "
    "and was rolled back, so nothing the block wrote was committed"
)
_DEAD = (
    "the connection was lost while the lock was held: the transaction did not commit, "
    "and another session may have held the key since"
)
_ENDED = (
    "the transaction ended inside the block (a COMMIT or ROLLBACK statement): the lock was "
    "released then, and what the block did afterwards ran without it"
)
_LOST_AT_COMMIT = (
    "the connection was lost during COMMIT: whether the transaction committed is unknown, "
    "and another session may hold the key now"
)


_AnyConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]


def _lost_before_commit(conn: _AnyConnection) -> LockLost | None:
    """Decide from the connection's state alone (no I/O) whether the transaction can commit."""
    status = conn.info.transaction_status
    if status in (TransactionStatus.INTRANS, TransactionStatus.ACTIVE):
        return None
    if status == TransactionStatus.INERROR:
        return LockLost(_ABORTED)
    if status == TransactionStatus.IDLE:
        return LockLost(_ENDED)
    return LockLost(_DEAD)  # UNKNOWN: the connection is gone


def _lost_at_commit(conn: _AnyConnection) -> LockLost | None:
    """A COMMIT failed: a lost connection leaves its outcome unknown; else the server answered."""
    if conn.broken or conn.closed:
        return LockLost(_LOST_AT_COMMIT, committed=None)
    return None


# --- the shared face --------------------------------------------------------------------------

# Counters of the sync locks are bumped from many threads; this lock is held for
# one addition, and recreated in a forked child in case a thread held it then.
_COUNTING = threading.Lock()


def _reset_counting_lock() -> None:
    global _COUNTING
    _COUNTING = threading.Lock()


os.register_at_fork(after_in_child=_reset_counting_lock)


class _AdvisoryLockBase:
    """What both advisory locks share: the key ids, the counters, introspection."""

    __slots__ = ("_acquisitions", "_contended", "_local", "_namespace", "_timeouts")

    _kind: ClassVar[str]
    _local: KeyedLock | AsyncLock

    def __init__(self, namespace: str) -> None:
        self._namespace = _validate.name("namespace", namespace)
        self._acquisitions = 0
        self._contended = 0  # of _acquisitions: queued behind another holder in this process
        self._timeouts = 0  # in the pool or the database; the local lock counts its own

    def advisory_key(self, key: object) -> int:
        """Return the signed 64-bit advisory-lock id of ``key``.

        The id is the first 8 bytes of BLAKE2b over the namespace and a
        canonical encoding of the key: the same in every process, machine and
        release, and the same for :class:`PgAdvisoryLock` and
        :class:`AsyncPgAdvisoryLock`, so a sync and an async process exclude
        each other. In ``pg_locks`` it shows as ``classid`` (high 32 bits)
        and ``objid`` (low 32 bits) with ``objsubid = 1``.

        Raises:
            ConfigurationError: ``key`` is not a str, int, bytes, bool, None or
                a tuple of those.
        """
        return _advisory_key(self._namespace, key)

    def locked(self, key: object) -> bool:
        """Return whether a thread or task of this process holds or is acquiring ``key``."""
        return self._local.locked(self.advisory_key(key))

    def __len__(self) -> int:
        """Number of keys this process currently holds or waits on."""
        return len(self._local)

    def stats(self) -> LockStats:
        """Return this process's :class:`~seerrperf.LockStats`.

        ``held_keys`` and ``waiting_tasks`` are this process's (a key being
        acquired in the database counts as held); ``acquisitions`` counts
        advisory locks obtained, ``contended_acquisitions`` those of them
        that first queued behind another holder of this process, and
        ``timeouts`` every wait that gave up (in the process's queue, for a
        pool connection, or in the database).
        """
        local = self._local.stats()
        with _COUNTING:
            acquisitions, contended, timeouts = (
                self._acquisitions,
                self._contended,
                self._timeouts,
            )
        return LockStats(
            held_keys=local.held_keys,
            waiting_tasks=local.waiting_tasks,
            acquisitions=acquisitions,
            contended_acquisitions=contended,
            timeouts=local.timeouts + timeouts,
        )

    def statistics(self) -> LockStats:
        """Deprecated alias of :meth:`stats`, removed in the next release."""
        warn_statistics_renamed()
        return self.stats()

    def __repr__(self) -> str:
        return f"<{self._kind} namespace={self._namespace!r} held={len(self._local)}>"

    def _count_acquired(self, local_hold: object) -> None:
        with _COUNTING:
            self._acquisitions += 1
            if waited(local_hold):
                self._contended += 1

    def _count_timeout(self) -> None:
        with _COUNTING:
            self._timeouts += 1

    def _pool_timeout(self, exc: PoolTimeout, ours_binds: bool) -> LockTimeout | None:
        if not ours_binds:
            return None  # the pool's own timeout expired first: its error, unwrapped
        self._count_timeout()
        return LockTimeout("no pooled connection free within the lock's timeout")

    def _db_timeout(self) -> LockTimeout:
        self._count_timeout()
        return LockTimeout("advisory lock not acquired within the timeout")


# --- sync --------------------------------------------------------------------------------------


class PgAdvisoryLock(_AdvisoryLockBase):
    """A fair per-key lock that holds across processes and hosts, in PostgreSQL (sync).

    ::

        pool = pool_factory()
        adv = PgAdvisoryLock(pool)

        def request_movie(tmdb_id: int) -> None:
            with adv(("movie", tmdb_id), timeout=2.0) as conn:
                cur = conn.execute("SELECT 1 FROM request WHERE ...")
                if cur.fetchone() is None:
                    conn.execute("INSERT INTO request ...")

    For Django and Flask under ``gunicorn -w 4`` (``sync`` or ``gthread``
    workers). Inside the block the key's ``pg_advisory_xact_lock`` is held
    in an open transaction on a pooled connection, which the block receives:
    the check and the insert run in that transaction, which commits when the
    block ends normally and rolls back when it raises; the advisory lock is
    released with it. Transaction-level locks also work behind PgBouncer in
    transaction pooling mode.

    The lock is only as good as its transaction. When the block ends
    normally but the transaction cannot commit -- the session died (the
    next statement, or the commit, finds out), or a statement failed and the
    block caught the error -- leaving the block raises
    :class:`~seerrperf.LockLost` instead of pretending success.

    Threads of one process first queue on a :class:`~seerrperf.KeyedLock`,
    so only the one at the head of the queue holds a pool connection while
    it waits for other processes. :class:`AsyncPgAdvisoryLock` is the async
    twin; the same key excludes across both.

    Args:
        pool: A ``psycopg_pool.ConnectionPool`` (e.g. from
            :func:`~seerrperf.pool_factory`), opened before the first use in
            each process.
        namespace: Mixed into every key's id, so applications sharing a
            database do not block each other.

    Raises:
        ConfigurationError: ``pool`` is not a ``ConnectionPool`` (an
            ``AsyncConnectionPool`` needs :class:`AsyncPgAdvisoryLock`) or
            ``namespace`` is not a non-empty printable string.
    """

    __slots__ = ("_pool",)
    _kind = "PgAdvisoryLock"
    _local: KeyedLock

    def __init__(
        self, pool: ConnectionPool[SyncConnection], *, namespace: str = "seerrperf"
    ) -> None:
        if isinstance(pool, AsyncConnectionPool):  # type: ignore[unreachable]
            raise ConfigurationError(
                "pool must be a psycopg_pool.ConnectionPool, got AsyncConnectionPool: "
                "use AsyncPgAdvisoryLock for an async pool (PgAdvisoryLock is sync since 0.2.0)"
            )
        self._pool = _validate.instance(
            "pool", pool, ConnectionPool, "a psycopg_pool.ConnectionPool"
        )
        super().__init__(namespace)
        self._local = KeyedLock()

    def __call__(
        self, key: object, *, timeout: float | None = None
    ) -> AbstractContextManager[SyncConnection]:
        """Return a context manager that holds ``key`` and gives the connection.

        Args:
            key: A str, int, bytes, bool, None or a (nested) tuple of those,
                e.g. ``("movie", 603)``.
            timeout: Seconds to wait in all (for this process's queue, a pool
                connection and the database lock); ``None`` waits as long as
                it takes (the pool's checkout timeout and the server's
                ``statement_timeout`` still apply).

        Returns:
            The context manager: ``with adv(key, timeout=2.0) as conn: ...``.

        Raises:
            ConfigurationError: ``key`` has another type, or ``timeout`` is
                negative or not a finite number.
        """
        if timeout is not None:
            timeout = _validate.duration("timeout", timeout)
        return self._hold(self.advisory_key(key), timeout)

    def dispatch(
        self,
        key: object,
        fn: Callable[Concatenate[SyncConnection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` while holding ``key``.

        ``conn`` is the connection holding the lock, inside its transaction.

        Args:
            key: The key to hold, as for ``adv(key)``.
            fn: A function taking the connection first.
            *args: Further positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returns.

        Raises:
            ConfigurationError: ``key`` has an unsupported type or ``fn``
                cannot be called.
            RuntimeError: The current thread already holds ``key``.
            LockLost: ``fn`` returned but its transaction did not commit.
        """
        _validate.function("fn", fn, "a function")
        with self(key) as conn:
            return fn(conn, *args, **kwargs)

    @contextmanager
    def _hold(self, lock_id: int, timeout: float | None) -> Iterator[SyncConnection]:
        deadline = None if timeout is None else time.monotonic() + timeout
        local = self._local(lock_id, timeout=timeout)
        with local:
            remaining = None if deadline is None else deadline - time.monotonic()
            checkout, ours_binds = _checkout_timeout(self._pool.timeout, remaining)
            entered = False
            try:
                with self._pool.connection(timeout=checkout) as conn:
                    entered = True
                    transaction = conn.transaction()
                    transaction.__enter__()
                    try:
                        self._lock_in_transaction(conn, lock_id, deadline)
                        self._count_acquired(local)
                        yield conn
                    except BaseException as exc:
                        transaction.__exit__(type(exc), exc, exc.__traceback__)
                        raise
                    lost = _lost_before_commit(conn)
                    if lost is not None:
                        transaction.__exit__(LockLost, lost, None)  # roll back what is left
                        raise lost
                    try:
                        transaction.__exit__(None, None, None)
                    except psycopg.OperationalError as exc:
                        lost = _lost_at_commit(conn)
                        if lost is None:
                            raise
                        raise lost from exc
            except PoolTimeout as exc:
                error = None if entered else self._pool_timeout(exc, ours_binds)
                if error is None:
                    raise
                raise error from exc

    def _lock_in_transaction(
        self, conn: SyncConnection, lock_id: int, deadline: float | None
    ) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            conn.execute(_lock_query(lock_id, remaining))
        except psycopg.errors.LockNotAvailable as exc:
            raise self._db_timeout() from exc


# --- async -------------------------------------------------------------------------------------


class AsyncPgAdvisoryLock(_AdvisoryLockBase):
    """A fair per-key lock that holds across processes and hosts, in PostgreSQL (async).

    ::

        adv = AsyncPgAdvisoryLock(pool)

        async with adv(("movie", 603), timeout=2.0) as conn:
            cur = await conn.execute("SELECT 1 FROM request WHERE ...")
            if await cur.fetchone() is None:
                await conn.execute("INSERT INTO request ...")

    The async twin of :class:`PgAdvisoryLock`, with the same key ids (a sync
    and an async process exclude each other), timeouts, transaction and
    :class:`~seerrperf.LockLost` rules. Tasks of one process first queue on
    an :class:`~seerrperf.AsyncLock`, so only the one at the head of the
    queue holds a pool connection while it waits for other processes. A task
    cancelled while it waits in the server has its query cancelled there
    first; the connection goes back to the pool healthy.

    Args:
        pool: An open ``psycopg_pool.AsyncConnectionPool`` (asyncio only).
        namespace: Mixed into every key's id, so applications sharing a
            database do not block each other.

    Raises:
        ConfigurationError: ``pool`` is not an ``AsyncConnectionPool`` or
            ``namespace`` is not a non-empty printable string.
    """

    __slots__ = ("_pool",)
    _kind = "AsyncPgAdvisoryLock"
    _local: AsyncLock

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection], *, namespace: str = "seerrperf"
    ) -> None:
        self._pool = _validate.instance(
            "pool", pool, AsyncConnectionPool, "a psycopg_pool.AsyncConnectionPool"
        )
        super().__init__(namespace)
        self._local = AsyncLock()

    def __call__(
        self, key: object, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """Return an async context manager that holds ``key`` and gives the connection.

        Args:
            key: A str, int, bytes, bool, None or a (nested) tuple of those,
                e.g. ``("movie", 603)``.
            timeout: Seconds to wait in all (for this process's queue, a pool
                connection and the database lock); ``None`` waits as long as
                it takes (the pool's checkout timeout and the server's
                ``statement_timeout`` still apply).

        Returns:
            The context manager: ``async with adv(key, timeout=2.0) as conn: ...``.

        Raises:
            ConfigurationError: ``key`` has another type, or ``timeout`` is
                negative or not a finite number.
        """
        if timeout is not None:
            timeout = _validate.duration("timeout", timeout)
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
            LockLost: ``fn`` returned but its transaction did not commit.
        """
        _validate.function("fn", fn, "a coroutine function")
        async with self(key) as conn:
            return await fn(conn, *args, **kwargs)

    @asynccontextmanager
    async def _hold(self, lock_id: int, timeout: float | None) -> AsyncIterator[AsyncConnection]:
        deadline = None if timeout is None else anyio.current_time() + timeout
        local = self._local(lock_id, timeout=timeout)
        async with local:
            remaining = None if deadline is None else deadline - anyio.current_time()
            checkout, ours_binds = _checkout_timeout(self._pool.timeout, remaining)
            entered = False
            try:
                async with self._pool.connection(timeout=checkout) as conn:
                    entered = True
                    transaction = conn.transaction()
                    await transaction.__aenter__()
                    try:
                        await self._lock_in_transaction(conn, lock_id, deadline)
                        self._count_acquired(local)
                        yield conn
                    except BaseException as exc:
                        # Shielded: an interrupted rollback makes psycopg close the
                        # connection. Bounded: a hung server must not hang us.
                        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                            await transaction.__aexit__(type(exc), exc, exc.__traceback__)
                        raise
                    lost = _lost_before_commit(conn)
                    if lost is not None:
                        with anyio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                            await transaction.__aexit__(LockLost, lost, None)
                        raise lost
                    try:
                        await transaction.__aexit__(None, None, None)
                    except psycopg.OperationalError as exc:
                        lost = _lost_at_commit(conn)
                        if lost is None:
                            raise
                        raise lost from exc
            except PoolTimeout as exc:
                error = None if entered else self._pool_timeout(exc, ours_binds)
                if error is None:
                    raise
                raise error from exc

    async def _lock_in_transaction(
        self, conn: AsyncConnection, lock_id: int, deadline: float | None
    ) -> None:
        remaining = None if deadline is None else deadline - anyio.current_time()
        try:
            await _execute_cancellable(conn, _lock_query(lock_id, remaining))
        except psycopg.errors.LockNotAvailable as exc:
            raise self._db_timeout() from exc


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
