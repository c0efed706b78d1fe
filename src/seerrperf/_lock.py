"""Fair per-key locks: :class:`AsyncLock` in one process, :class:`PgAdvisoryLock` across many.

Seerr's AsyncLock wakes every waiter of a key on each release and lets the
first one to run win: O(n) wake-ups per release, no FIFO order, no timeout.
Here each key has a record of its holder and a queue of waiters; a release
hands the key straight to the first waiter still waiting (ownership moves
before that waiter even runs), so a newcomer can never overtake it and each
hand-off wakes exactly one task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from asyncio import _get_running_loop
from asyncio import current_task as _asyncio_current_task
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

import anyio
import anyio.lowlevel
import psycopg.errors
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ._exceptions import ConfigurationError, LockTimeout
from ._pool import AsyncConnection
from ._validate import require_seconds

__all__ = ["AsyncLock", "LockStatistics", "PgAdvisoryLock"]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LockStatistics:
    """A snapshot of a lock's state and counters.

    Attributes:
        held_keys: Keys currently held (a key with waiters is always held).
        waiting_tasks: Tasks queued for a key, not counting holders.
        acquisitions: Successful acquisitions since the lock was created.
        contended_acquisitions: Those of ``acquisitions`` that had to queue.
        timeouts: Acquisitions that gave up with :class:`~seerrperf.LockTimeout`.
    """

    held_keys: int
    waiting_tasks: int
    acquisitions: int
    contended_acquisitions: int
    timeouts: int

    def as_dict(self) -> dict[str, int]:
        """Return the statistics as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


def _current_task() -> object:
    # The event loop's own lookup: anyio.get_current_task() builds a TaskInfo
    # and costs microseconds, several times a whole uncontended acquisition.
    loop = _get_running_loop()
    task: object = None if loop is None else _asyncio_current_task(loop)
    if task is None:
        import trio.lowlevel  # only reached under trio, which is then installed

        task = trio.lowlevel.current_task()
    return task


class _Waiter:
    __slots__ = ("gone", "granted", "signal", "task")

    def __init__(self, task: object) -> None:
        self.task = task
        # On asyncio a bare future: anyio.Event() costs several times more,
        # which matters when thousands of tasks queue.
        self.signal: asyncio.Future[None] | anyio.Event = (
            task.get_loop().create_future() if isinstance(task, asyncio.Task) else anyio.Event()
        )
        self.granted = False  # the key was handed to this waiter
        self.gone = False  # gave up; skipped and dropped by the next hand-off

    def wait(self) -> Awaitable[object]:
        signal = self.signal
        return signal if isinstance(signal, asyncio.Future) else signal.wait()

    def wake(self) -> None:
        signal = self.signal
        if not isinstance(signal, asyncio.Future):
            signal.set()
        elif not signal.done():  # done: cancelled along with its task
            signal.set_result(None)


class _WaitQueue(deque[_Waiter]):
    """The waiters of one key, oldest first; departed waiters are removed lazily."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        super().__init__()
        self.gone = 0

    def depart(self, waiter: _Waiter) -> None:
        waiter.gone = True
        self.gone += 1
        # Removing from the middle of a deque is O(n); instead compact once half
        # the entries are departed, which keeps the work per waiter O(1).
        if self.gone * 2 > len(self):
            live = [w for w in self if not w.gone]
            self.clear()
            self.extend(live)
            self.gone = 0


class _Hold:
    """What ``lock(key)`` returns: acquires on enter, releases on exit."""

    __slots__ = ("_key", "_lock", "_timeout")

    def __init__(self, lock: AsyncLock, key: Hashable, timeout: float | None) -> None:
        self._lock = lock
        self._key = key
        self._timeout = timeout

    async def __aenter__(self) -> None:
        lock = self._lock
        owners = lock._owners
        key = self._key
        task = _current_task()
        if key not in owners:
            # The fast path: no await, no allocation beyond the dict entry.
            owners[key] = task
            lock._acquisitions += 1
            return
        await lock._wait(key, task, self._timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock._release(self._key)


class AsyncLock:
    """A fair lock per key, for asyncio and trio (through anyio).

    ::

        lock = AsyncLock()

        async with lock(("movie", 603), timeout=2.0):
            if not await find_active_request("movie", 603):
                await create_request("movie", 603)

    Guarantees, per key: one holder at a time; waiters get the key in the
    order they asked for it (a newcomer never overtakes a waiter); a release
    wakes one waiter, never all; a waiter that is cancelled or times out
    leaves the queue, and one cancelled just after being handed the key
    passes it on; a holder that fails or is cancelled releases; a key with no
    holder and no waiter is forgotten, so many distinct keys use no memory
    once released.

    Like ``asyncio.Lock``, an uncontended acquisition does not yield to the
    event loop; a contended one waits, which is a cancellation point.

    The lock is not re-entrant: a task that asks again for a key it holds
    gets ``RuntimeError`` instead of deadlocking. Use one instance per event
    loop; it is not thread-safe.
    """

    __slots__ = ("_acquisitions", "_contended", "_owners", "_queues", "_timeouts", "_waiting")

    def __init__(self) -> None:
        self._owners: dict[Hashable, object] = {}  # key -> task holding it
        self._queues: dict[Hashable, _WaitQueue] = {}  # only keys that have had waiters
        self._waiting = 0
        self._acquisitions = 0
        self._contended = 0
        self._timeouts = 0

    def __call__(
        self, key: Hashable, *, timeout: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Return an async context manager that holds ``key`` inside its block.

        Args:
            key: Any hashable value; prefer tuples such as ``("movie", 603)``
                so a movie and a show with the same id are different keys.
            timeout: Seconds to wait for the key; ``None`` waits as long as it
                takes, ``0`` only takes a free key.

        Returns:
            The context manager (``async with lock(key): ...``).

        Raises:
            ConfigurationError: ``timeout`` is negative or not a finite number.
        """
        if timeout is not None:
            require_seconds("timeout", timeout, allow_zero=True)
        return _Hold(self, key, timeout)

    async def dispatch(
        self, key: Hashable, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``await fn(*args, **kwargs)`` while holding ``key``.

        Args:
            key: The key to hold, as for ``lock(key)``.
            fn: A coroutine function.
            *args: Positional arguments for ``fn``.
            **kwargs: Keyword arguments for ``fn``.

        Returns:
            What ``fn`` returns.

        Raises:
            RuntimeError: The current task already holds ``key``.
        """
        async with _Hold(self, key, None):
            return await fn(*args, **kwargs)

    def locked(self, key: Hashable) -> bool:
        """Return whether some task holds ``key``."""
        return key in self._owners

    def __len__(self) -> int:
        """Number of keys currently held or waited on."""
        return len(self._owners)

    def statistics(self) -> LockStatistics:
        """Return the current :class:`LockStatistics`."""
        return LockStatistics(
            held_keys=len(self._owners),
            waiting_tasks=self._waiting,
            acquisitions=self._acquisitions,
            contended_acquisitions=self._contended,
            timeouts=self._timeouts,
        )

    def __repr__(self) -> str:
        return f"<AsyncLock held={len(self._owners)} waiting={self._waiting}>"

    async def _wait(self, key: Hashable, task: object, timeout: float | None) -> None:
        if self._owners[key] is task:
            raise RuntimeError("this task already holds the key (AsyncLock is not re-entrant)")
        if timeout == 0:
            self._timeouts += 1
            raise LockTimeout("the key is held and timeout=0 does not wait")
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _WaitQueue()
        waiter = _Waiter(task)
        queue.append(waiter)
        self._waiting += 1
        try:
            if timeout is None:
                await waiter.wait()
            else:
                with anyio.move_on_after(timeout):
                    await waiter.wait()
        except BaseException:
            # Cancelled (or failed) while waiting. If the key was handed over in
            # the meantime it is ours now: pass it on rather than strand it.
            if waiter.granted:
                self._release(key)
            else:
                self._waiting -= 1
                queue.depart(waiter)
            raise
        if not waiter.granted:
            self._waiting -= 1
            queue.depart(waiter)
            self._timeouts += 1
            raise LockTimeout(f"lock not acquired within {timeout} s")
        self._acquisitions += 1
        self._contended += 1

    def _release(self, key: Hashable) -> None:
        queue = self._queues.get(key) if self._queues else None
        if queue is not None:
            while queue:
                waiter = queue.popleft()
                if waiter.gone:
                    queue.gone -= 1
                    continue
                # Ownership moves now, before the waiter runs, so nobody can
                # take the key in between.
                waiter.granted = True
                self._owners[key] = waiter.task
                self._waiting -= 1
                waiter.wake()
                return
            del self._queues[key]
        del self._owners[key]


# --- PostgreSQL advisory locks ------------------------------------------------------------


def _frame(tag: bytes, payload: bytes) -> bytes:
    # Tag and length make the encoding self-delimiting, hence injective.
    return tag + str(len(payload)).encode() + b":" + payload


def _encode_key(key: object) -> bytes:
    if key is None:
        return b"N"
    if isinstance(key, bool):
        return b"T" if key else b"F"
    if isinstance(key, int):
        n = int(key)
        return _frame(b"i", n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))
    if isinstance(key, str):
        return _frame(b"s", key.encode("utf-8", "surrogatepass"))
    if isinstance(key, bytes):
        return _frame(b"b", bytes(key))
    if isinstance(key, tuple):
        return _frame(b"t", b"".join(_encode_key(item) for item in key))
    raise ConfigurationError(
        f"key must be str, int, bytes, bool, None or a tuple of those, got {type(key).__name__} "
        "(an advisory-lock key must hash the same in every process)"
    )


def _advisory_key(namespace: str, key: object) -> int:
    # Python's hash() is randomised per process and PostgreSQL's hashtext()
    # may change between versions: a digest of a canonical encoding is neither.
    payload = _frame(b"n", namespace.encode("utf-8", "surrogatepass")) + _encode_key(key)
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
            ``namespace`` is not a non-empty string.
    """

    __slots__ = ("_acquisitions", "_local", "_namespace", "_pool", "_timeouts")

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection], *, namespace: str = "seerrperf"
    ) -> None:
        if not isinstance(pool, AsyncConnectionPool):
            raise ConfigurationError(
                f"pool must be a psycopg_pool.AsyncConnectionPool, got {type(pool).__name__}"
            )
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError("namespace must be a non-empty string")
        self._pool = pool
        self._namespace = namespace
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
        if timeout is not None:
            require_seconds("timeout", timeout, allow_zero=True)
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
            ConfigurationError: ``key`` has an unsupported type.
            RuntimeError: The current task already holds ``key``.
        """
        async with self(key) as conn:
            return await fn(conn, *args, **kwargs)

    def locked(self, key: object) -> bool:
        """Return whether a task of this process holds or is acquiring ``key``."""
        return self._local.locked(self.advisory_key(key))

    def __len__(self) -> int:
        """Number of keys this process currently holds or waits on."""
        return len(self._local)

    def statistics(self) -> LockStatistics:
        """Return this process's :class:`LockStatistics`.

        ``acquisitions`` counts advisory locks obtained, ``contended_acquisitions``
        those that queued behind another task of this process, and ``timeouts``
        both kinds of wait that gave up.
        """
        local = self._local.statistics()
        return dataclasses.replace(
            local, acquisitions=self._acquisitions, timeouts=local.timeouts + self._timeouts
        )

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
