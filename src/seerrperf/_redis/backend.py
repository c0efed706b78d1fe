"""``RedisBackend``: one per process -- clients, the circuit breaker, the subscriber, fork safety.

The backend owns everything that talks to Redis: a sync client (created
with the backend; redis-py connects on first use), one asyncio client per
event loop (created on first use there; trio runs the sync client in a worker
thread), the pub/sub thread, the leases this process holds, and the counters.
The shared tier (:mod:`.tier`) and the rate limiter (:mod:`.limiter`) build
:class:`Call` objects -- a script, its keys and arguments, and how to read the
reply -- which :meth:`RedisBackend._run` and :meth:`RedisBackend._arun` send:
the twins differ only there.

Every call has a short socket timeout and is refused at once while the
breaker is open; a failure becomes the :data:`FALLBACK` reply, which each
``parse`` turns into its "fallback" answer. Nothing about Redis ever raises
to the caller.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import anyio.to_thread

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._redact import redact
from seerrperf._runtime import Clock, current_loop

from .breaker import Admission, Breaker, classify
from .codec import Serializer, serializer_argument
from .keyspace import Keyspace, Message, parse_message
from .pending import Backlog, Pending
from .scripts import ALL_SCRIPTS, CLEAR, DELETE, FLUSH, RENEW, Script
from .stats import Counters, RedisStats
from .subscriber import TICK, Subscriber
from .waiters import Waiters

if TYPE_CHECKING:
    from .limiter import RedisRateLimiter
    from .tier import Invalidation, SharedTier

__all__ = ["FALLBACK", "Call", "RedisBackend"]

logger = logging.getLogger("seerrperf.redis")

_R = TypeVar("_R")

_MISSING_EXTRA = "the redis extra is not installed: pip install 'seerrperf[redis]'"
_SCHEMES: Final = ("redis", "rediss", "unix")
_MESSAGE_LIMIT: Final = 200
DELETE_CHUNK: Final = 256
"""Keys per ``delete`` script call (each brings its lease: twice as many ``KEYS``)."""


class _Fallback(enum.Enum):
    FALLBACK = enum.auto()


FALLBACK: Final = _Fallback.FALLBACK
"""The reply of a call that did not reach Redis (it failed, or the breaker is open)."""


@dataclass(frozen=True, slots=True)
class Call(Generic[_R]):
    """One script call and how to read its reply (or :data:`FALLBACK`)."""

    script: Script
    keys: list[str]
    args: list[Any]
    parse: Callable[[Any], _R]


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets in a Redis URL: its password, raw and percent-decoded, also from the query."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        for name, value in parse_qsl(parts.query, keep_blank_values=False):
            if name.lower() == "password" and value:
                found += [value, unquote(value)]
        # A bare "redis://secret@host" is often a token put where the password belongs.
        if parts.username and parts.password is None:
            found += [parts.username, unquote(parts.username)]
    except ValueError:
        pass
    return tuple(dict.fromkeys(s for s in found if s))


def _masked_url(url: str, secrets_: tuple[str, ...]) -> str:
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}"
    if parts.port:
        shown += f":{parts.port}"
    shown += parts.path
    if parts.password or (parts.username and parts.password is None):
        shown = shown.replace("://", "://***@", 1)
    return redact(shown, secrets_)


def _new_source() -> str:
    return f"{os.getpid()}-{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class _Listener:
    cache: str
    callback: Callable[[Invalidation], None]


class Subscription:
    """A registered invalidation listener; :meth:`close` unregisters it."""

    __slots__ = ("_backend", "_listener")

    def __init__(self, backend: RedisBackend, listener: _Listener) -> None:
        self._backend = backend
        self._listener = listener

    def __repr__(self) -> str:
        return f"<Subscription cache={self._listener.cache!r}>"

    def close(self) -> None:
        """Stop calling the listener (idempotent)."""
        self._backend._unsubscribe(self._listener)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisBackend:
    """Redis (or Valkey) beneath every process: a shared cache tier, fleet-wide
    single-flight, invalidations everywhere and a fleet-wide rate limit.

    Make one per process, with :meth:`from_url`, and share it::

        backend = RedisBackend.from_url(os.environ["REDIS_URL"])
        tmdb_tier = backend.tier("tmdb")
        limiter = backend.rate_limiter("tmdb", max_rps=40)

    Redis is never a hard dependency: when it is down, slow or full, every
    operation returns its "fallback" answer at once (the caller uses its own
    tier, its own single-flight, a local rate limit), the outage is logged
    once and counted, and calls go to Redis again as soon as a probe (one
    every ``retry_interval``) succeeds.

    Sync code (threads, Django and Flask workers) uses the plain methods and
    receives invalidations through a daemon thread; async code uses the
    ``a``-prefixed twins (asyncio natively, trio through a worker thread).
    After ``os.fork()`` (gunicorn ``--preload``) the child gets fresh
    connections, its own subscription and its own identity.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
            (TLS) or ``unix://``; the password never appears in a ``repr``, a
            message or a log line.
        namespace: Prefix of every Redis key and of the channel, so that
            applications (or environments) sharing a server stay apart.
        timeout: Seconds each call to Redis may take (connect, send, answer).
        retry_interval: Seconds between probes while Redis is unavailable.
        lease_time: Seconds a load's lease lasts without renewal: a holder
            that dies is taken over within this (its process renews it while
            the load runs).
        lease_wait: Seconds a caller waits for another process's load before
            it loads by itself.
        serializer: ``"json"`` (default), ``"pickle"`` (read the warning in
            ``docs/scale-out.md`` first) or an object with ``name``,
            ``dumps()`` and ``loads()``.
        max_value_bytes: Largest serialized value stored or read; a larger one
            stays local.
        expected_workers: Processes sharing a rate limit; while Redis is
            unavailable each uses ``max_rps / expected_workers`` locally.
        clock: Monotonic clock (the breaker, wait budgets, local limits).

    Raises:
        ConfigurationError: the redis extra is not installed, the URL is not a
            Redis URL, or another argument is invalid.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "seerrperf",
        timeout: float = 0.5,
        retry_interval: float = 0.5,
        lease_time: float = 5.0,
        lease_wait: float = 30.0,
        serializer: str | Serializer = "json",
        max_value_bytes: int = 4 * 1024 * 1024,
        expected_workers: int = 1,
        clock: Clock = time.monotonic,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(f"url must be a string, got {type(url).__name__}")
        self._secrets = url_secrets(url)
        scheme = url.partition("://")[0].lower()
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                "url must start with redis://, rediss:// or unix:// (the value is not shown: "
                "it may hold a password)"
            )
        self._url = url
        self._shown_url = _masked_url(url, self._secrets)
        self._namespace = _validate.name("namespace", namespace, max_bytes=200)
        self._timeout = _validate.duration("timeout", timeout, allow_zero=False, maximum=60)
        self._retry_interval = _validate.duration(
            "retry_interval", retry_interval, allow_zero=False, maximum=3600
        )
        self._lease_time = _validate.duration("lease_time", lease_time, maximum=86_400)
        if self._lease_time < 0.1:
            raise ConfigurationError(f"lease_time must be at least 0.1 seconds, got {lease_time}")
        self._lease_wait = _validate.duration("lease_wait", lease_wait, maximum=86_400)
        self._serializer = serializer_argument(serializer)
        self._max_value_bytes = _validate.count(
            "max_value_bytes", max_value_bytes, minimum=1, maximum=512 * 1024 * 1024
        )
        self._expected_workers = _validate.count(
            "expected_workers", expected_workers, minimum=1, maximum=100_000
        )
        self._clock = _validate.function("clock", clock, "a clock like time.monotonic")
        try:
            import redis  # the extra; never imported by `import seerrperf`
        except ImportError:
            raise ConfigurationError(_MISSING_EXTRA) from None
        self._redis = redis
        self._keyspace = Keyspace(self._namespace)
        self._breaker = Breaker(self._retry_interval, self._clock)
        self._counters = Counters()
        self._waiters = Waiters()
        self._pending = Pending()
        self._listeners: tuple[_Listener, ...] = ()
        self._closed = False
        self._init_process_state()
        self._sync = self._make_client(retries=1)  # checks the URL's syntax
        backend = weakref.ref(self)

        def after_fork_in_child() -> None:
            alive = backend()
            if alive is not None:
                alive._after_fork()

        os.register_at_fork(after_in_child=after_fork_in_child)

    def _init_process_state(self) -> None:
        """Everything that belongs to one process, fresh (also in a forked child)."""
        self._lock = threading.Lock()
        self._source = _new_source()
        self._aclients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._pubsub_client: Any = None
        self._subscriber: Subscriber | None = None
        self._held: dict[str, str] = {}  # lease key -> lease value, renewed while loading
        self._next_renewal = time.monotonic() + self._lease_time / 3  # none is older
        self._logged: set[str] = set()
        self._hooks = _Hooks(self)
        self._tasks: set[asyncio.Task[Any]] = set()  # strong refs to protected calls

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "seerrperf",
        timeout: float = 0.5,
        retry_interval: float = 0.5,
        lease_time: float = 5.0,
        lease_wait: float = 30.0,
        serializer: str | Serializer = "json",
        max_value_bytes: int = 4 * 1024 * 1024,
        expected_workers: int = 1,
        clock: Clock = time.monotonic,
    ) -> RedisBackend:
        """Return a backend for the Redis or Valkey server at ``url``.

        Nothing connects yet: the first operation does, and a server that is
        down then only means fallbacks. The arguments are those of the class.

        Raises:
            ConfigurationError: the redis extra is not installed, the URL is
                not a Redis URL, or another argument is invalid.
        """
        return cls(
            url,
            namespace=namespace,
            timeout=timeout,
            retry_interval=retry_interval,
            lease_time=lease_time,
            lease_wait=lease_wait,
            serializer=serializer,
            max_value_bytes=max_value_bytes,
            expected_workers=expected_workers,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"<RedisBackend {self._shown_url} namespace={self._namespace!r}>"

    # -- what the tier and the limiter read --------------------------------------------

    @property
    def namespace(self) -> str:
        """The prefix of every key and of the channel."""
        return self._namespace

    @property
    def timeout(self) -> float:
        """Seconds each call to Redis may take."""
        return self._timeout

    @property
    def lease_time(self) -> float:
        """Seconds a lease lasts without renewal."""
        return self._lease_time

    @property
    def lease_wait(self) -> float:
        """Seconds a caller waits for another process's load."""
        return self._lease_wait

    @property
    def serializer(self) -> Serializer:
        """How values cross processes."""
        return self._serializer

    @property
    def max_value_bytes(self) -> int:
        """Largest serialized value stored or read."""
        return self._max_value_bytes

    @property
    def expected_workers(self) -> int:
        """Processes sharing a rate limit, for the local fallback limit."""
        return self._expected_workers

    @property
    def clock(self) -> Clock:
        """The backend's monotonic clock."""
        return self._clock

    @property
    def source_id(self) -> str:
        """This process's id in invalidation messages (new after a fork)."""
        return self._source

    @property
    def available(self) -> bool:
        """Whether calls go to Redis now (``False`` while falling back)."""
        return self._breaker.closed and not self._closed

    # -- the faces ----------------------------------------------------------------------

    def tier(self, cache: str) -> SharedTier:
        """Return the shared tier of the cache named ``cache``.

        Raises:
            ConfigurationError: ``cache`` is not a non-empty printable string.
        """
        from .tier import SharedTier

        return SharedTier(self, _validate.name("cache", cache, max_bytes=200))

    def rate_limiter(
        self,
        name: str,
        *,
        max_rps: float,
        expected_workers: int | None = None,
        margin: float = 0.05,
    ) -> RedisRateLimiter:
        """Return a rate limiter shared by every process that uses ``name``.

        Args:
            name: The limit's name (every process passing it shares the limit).
            max_rps: Starts per second at most, for the whole fleet.
            expected_workers: Overrides the backend's ``expected_workers`` for
                the local limit used while Redis is unavailable.
            margin: Seconds by which any ``max_rps + 1`` consecutive starts span
                more than one second, so that up to this much variation in the
                delay between a start and its arrival upstream still keeps
                every one-second window within ``max_rps`` (the average rate
                is ``max_rps / (1 + margin)``).

        Raises:
            ConfigurationError: an argument is invalid.
        """
        from .limiter import RedisRateLimiter

        workers = self._expected_workers if expected_workers is None else expected_workers
        return RedisRateLimiter(
            self, name, max_rps=max_rps, expected_workers=workers, margin=margin
        )

    def flush(self) -> bool:
        """Invalidate every cache of this namespace, in every process.

        One round trip: the namespace's generation moves on, so every entry
        written before is invisible at once, and every process drops its
        local tiers.

        Returns:
            ``True`` when Redis applied it; ``False`` when it was unavailable
            (the flush is applied when it is back, before anything is read).
        """
        return self._run(self._flush_call())

    async def aflush(self) -> bool:
        """The async twin of :meth:`flush`."""
        return await self._arun(self._flush_call())

    def _flush_call(self) -> Call[bool]:
        message = self._message("flush", None)

        def parse(reply: Any) -> bool:
            self._waiters.wake_cache(None)
            if reply is FALLBACK:
                self._pending.flush()
                return False
            self._counters.add("invalidations_sent")
            return True

        return Call(
            FLUSH, [self._keyspace.namespace_generation], [self._keyspace.channel, message], parse
        )

    def stats(self) -> RedisStats:
        """Return a snapshot of this process's counters."""
        values = self._counters.snapshot()
        subscriber = self._subscriber
        return RedisStats(
            namespace=self._namespace,
            available=self.available,
            subscribed=subscriber is not None and subscriber.subscribed,
            limiter_wait_seconds=float(values.pop("limiter_wait_seconds")),
            **{name: int(value) for name, value in values.items()},
        )

    # -- life cycle ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the subscriber thread and close the sync connections.

        Afterwards every operation falls back. Async clients are closed by
        :meth:`aclose` (on their own event loop).
        """
        self._closed = True
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.stop(timeout=TICK + 2 * self._timeout + 1.0)
        for client in (self._sync, self._pubsub_client):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing must not fail the caller
                    logger.debug("closing a Redis client failed", exc_info=True)

    async def aclose(self) -> None:
        """Close this event loop's async client, then everything :meth:`close` closes."""
        loop = current_loop()
        if isinstance(loop, asyncio.AbstractEventLoop):
            # Let protected calls (a lease given back for a cancelled caller) finish first.
            # Such a call may start another (the release after a lookup): wait for all.
            deadline = loop.time() + 2 * self._timeout + 1.0
            while (
                pending := [t for t in self._tasks if t.get_loop() is loop and not t.done()]
            ) and loop.time() < deadline:
                await asyncio.wait(pending, timeout=deadline - loop.time())
        self._closed = True
        client = (
            self._aclients.pop(loop, None) if isinstance(loop, asyncio.AbstractEventLoop) else None
        )
        if client is not None:
            try:
                await client.aclose()
            except Exception:
                logger.debug("closing a Redis client failed", exc_info=True)
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _after_fork(self) -> None:
        """In a forked child: fresh connections, identity, thread, leases and counters."""
        self._init_process_state()
        self._sync = self._make_client(retries=1)
        self._breaker.reset()
        self._counters.reset()
        self._waiters.reset()
        self._pending.reset()
        if self._listeners and not self._closed:
            try:
                self._ensure_subscriber()
            except Exception:  # a child that cannot start a thread still works, locally
                logger.debug("could not start the subscriber after fork", exc_info=True)

    # -- clients -----------------------------------------------------------------------

    def _client_options(self, retries: int, retry_class: Any, backoff: Any) -> dict[str, Any]:
        errors = self._redis.exceptions
        return {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            # One immediate retry on a dead pooled connection (a server restart);
            # never on a timeout: a slow server must cost one timeout, not several.
            "retry": retry_class(backoff(), retries, supported_errors=(errors.ConnectionError,)),
            "health_check_interval": 0,
            # RESP2 everywhere: what Redis 6.2 speaks by default and redis-py 5 uses
            # (redis-py 8 would negotiate RESP3, with another round trip per connection).
            "protocol": 2,
        }

    def _make_client(self, retries: int) -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            return self._redis.Redis.from_url(
                self._url, **self._client_options(retries, Retry, NoBackoff)
            )
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"url is not a usable Redis URL: {self._describe(exc)}"
            ) from None

    def _async_client(self, loop: asyncio.AbstractEventLoop) -> Any:
        client = self._aclients.get(loop)
        if client is not None:
            return client
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        with self._lock:
            for old in [known for known in self._aclients if known.is_closed()]:
                del self._aclients[old]
            client = self._aclients.get(loop)
            if client is None:
                client = self._redis.asyncio.Redis.from_url(
                    self._url, **self._client_options(1, Retry, NoBackoff)
                )
                self._aclients[loop] = client
        return client

    def _open_pubsub(self) -> Any:
        """A new ``PubSub`` on a client that never retries (a reconnect must be noticed)."""
        if self._pubsub_client is None:
            self._pubsub_client = self._make_client(retries=0)
        return self._pubsub_client.pubsub(ignore_subscribe_messages=False)

    def _ping(self) -> None:
        """``PING`` with the sync client, past the breaker (health checks); raises on failure."""
        if self._closed:
            raise RuntimeError("the backend is closed")
        self._counters.add("round_trips")
        self._sync.ping()

    async def _aping(self, loop: asyncio.AbstractEventLoop) -> None:
        """``PING`` with ``loop``'s async client, past the breaker; raises on failure."""
        if self._closed:
            raise RuntimeError("the backend is closed")
        self._counters.add("round_trips")
        await self._async_client(loop).ping()

    # -- running calls -----------------------------------------------------------------

    def _run(self, call: Call[_R]) -> _R:
        """Send ``call`` with the sync client and read its reply."""
        return call.parse(self._execute(call.script, call.keys, call.args))

    async def _arun(self, call: Call[_R]) -> _R:
        """Send ``call`` from async code and read its reply."""
        return call.parse(await self._aexecute(call.script, call.keys, call.args))

    async def _arun_protected(
        self, call: Call[_R], abandoned: Callable[[_R], None] | None = None
    ) -> _R:
        """Send ``call`` so that it completes even if the caller is cancelled meanwhile.

        A lease won (or given back) in a round trip whose caller was cancelled
        must not be left unknown: on asyncio the call runs as a task of its own
        behind ``asyncio.shield`` (which native ``task.cancel()`` cannot
        interrupt, unlike an anyio shield), and ``abandoned(result)`` runs when
        it completes after its caller left; on trio an anyio shield holds it
        (the caller then sees the cancellation at its next checkpoint). Either
        way it is bounded by the call's timeout.
        """
        loop = current_loop()
        if not isinstance(loop, asyncio.AbstractEventLoop):
            with anyio.CancelScope(shield=True):
                result = await self._arun(call)
            return result
        task = loop.create_task(self._arun(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if abandoned is not None:
                callback = abandoned

                def settle(done: asyncio.Task[_R]) -> None:
                    if not done.cancelled() and done.exception() is None:
                        callback(done.result())

                task.add_done_callback(settle)
            raise

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task nobody awaits, on the running asyncio loop."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admit(self) -> Admission:
        if self._closed:
            return "skip"
        admission = self._breaker.admit()
        if admission == "skip":
            self._counters.add("fallbacks")
        return admission

    def _replay(self) -> None:
        """Apply the backlog of invalidations now, if Redis takes them.

        Called after a write Redis refused while answering (full: a refused
        ``set`` must still delete the shared value it would have replaced,
        and ``DEL`` is what a full server still accepts).
        """
        if self._pending and self._breaker.closed and not self._closed:
            self._execute(None, [], [])

    async def _areplay(self) -> None:
        """The async twin of :meth:`replay`."""
        if self._pending and self._breaker.closed and not self._closed:
            await self._aexecute(None, [], [])

    def _execute(self, script: Script | None, keys: list[str], args: list[Any]) -> Any:
        admission = self._admit()
        if admission == "skip":
            return FALLBACK
        client = self._sync
        try:
            if self._pending:  # invalidations Redis missed go first
                backlog = self._pending.take()
                try:
                    for replay in self._replay_calls(backlog):
                        self._evalsha(client, *replay)
                except BaseException:
                    self._pending.restore(backlog)
                    raise
            reply = None if script is None else self._evalsha(client, script, keys, args)
        except Exception as exc:
            self._failed(exc)
            return FALLBACK
        self._succeeded(admission)
        return reply

    async def _aexecute(self, script: Script | None, keys: list[str], args: list[Any]) -> Any:
        loop = current_loop()
        if not isinstance(loop, asyncio.AbstractEventLoop):
            # redis.asyncio is asyncio-only: under trio the sync client runs in a thread.
            return await anyio.to_thread.run_sync(self._execute, script, keys, args)
        admission = self._admit()
        if admission == "skip":
            return FALLBACK
        try:
            client = self._async_client(loop)
            if self._pending:  # invalidations Redis missed go first
                backlog = self._pending.take()
                try:
                    for replay in self._replay_calls(backlog):
                        await self._aevalsha(client, *replay)
                except BaseException:
                    self._pending.restore(backlog)
                    raise
            reply = None if script is None else await self._aevalsha(client, script, keys, args)
        except Exception as exc:
            self._failed(exc)
            return FALLBACK
        self._succeeded(admission)
        return reply

    def _evalsha(self, client: Any, script: Script, keys: list[str], args: list[Any]) -> Any:
        self._counters.add("round_trips")
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:
            # A new (or restarted) server does not know our scripts: load them all at
            # once, so that no other first use costs the extra round trips.
            self._counters.add("round_trips", 2)
            with client.pipeline(transaction=False) as pipe:
                for known in ALL_SCRIPTS:
                    pipe.script_load(known.source)
                pipe.execute()
            return client.evalsha(script.sha, len(keys), *keys, *args)

    async def _aevalsha(self, client: Any, script: Script, keys: list[str], args: list[Any]) -> Any:
        self._counters.add("round_trips")
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:
            self._counters.add("round_trips", 2)
            async with client.pipeline(transaction=False) as pipe:
                for known in ALL_SCRIPTS:
                    pipe.script_load(known.source)
                await pipe.execute()
            return await client.evalsha(script.sha, len(keys), *keys, *args)

    def _replay_calls(self, backlog: Backlog) -> Iterator[tuple[Script, list[str], list[Any]]]:
        keyspace = self._keyspace
        channel = keyspace.channel
        if backlog.flush:
            yield FLUSH, [keyspace.namespace_generation], [channel, self._message("flush", None)]
            return
        for cache in sorted(backlog.clears):
            yield CLEAR, [keyspace.generation(cache)], [channel, self._message("clear", cache)]
        for cache, digests in backlog.deletes.items():
            for call in self._delete_calls(cache, sorted(digests), lambda _chunk: _ignore):
                yield call.script, call.keys, call.args

    def _delete_calls(
        self, cache: str, digests: list[str], parse_for: Callable[[list[str]], Callable[[Any], _R]]
    ) -> Iterator[Call[_R]]:
        """The ``delete`` script calls for ``digests`` of ``cache``, in chunks.

        ``parse_for(chunk)`` returns how to read the reply of the call for ``chunk``.
        """
        keyspace = self._keyspace
        for start in range(0, len(digests), DELETE_CHUNK):
            chunk = digests[start : start + DELETE_CHUNK]
            keys = [
                name for d in chunk for name in (keyspace.entry(cache, d), keyspace.lease(cache, d))
            ]
            args = [keyspace.channel, self._message("keys", cache, chunk)]
            yield Call(DELETE, keys, args, parse_for(chunk))

    def _failed(self, error: Exception) -> None:
        self._counters.add("errors")
        self._counters.add("fallbacks")
        text = self._describe(error)
        if classify(error) == "down":
            if self._breaker.failed():
                logger.warning(
                    "Redis is unavailable (%s): this process uses its own tiers, single-flight "
                    "and rate limit until Redis answers again",
                    text,
                )
        else:
            self._log_once(
                f"refused:{type(error).__name__}",
                "Redis refused a command (%s); those operations fall back",
                text,
            )

    def _succeeded(self, admission: Admission) -> None:
        outage = self._breaker.succeeded(admission)
        if outage is not None:
            with self._lock:
                self._logged = {kind for kind in self._logged if not kind.startswith("refused:")}
            logger.warning("Redis answers again after %.1f s: the shared tier is back", outage)

    # -- helpers for the tier and the limiter ------------------------------------------

    def _message(
        self, op: str, cache: str | None, digests: list[str] | tuple[str, ...] = ()
    ) -> str:
        """An invalidation message from this process."""
        return Message(self._source, op, cache, tuple(digests)).encode()  # type: ignore[arg-type]

    def _describe(self, error: BaseException) -> str:
        """A short, password-free description of ``error``."""
        text = " ".join(str(error).split()) or "no details"
        return redact(f"{type(error).__name__}: {text}", self._secrets)[:_MESSAGE_LIMIT]

    def _log_once(self, kind: str, message: str, *args: object) -> None:
        """Log a warning the first time ``kind`` happens (until a recovery re-arms it)."""
        with self._lock:
            if kind in self._logged:
                return
            self._logged.add(kind)
        logger.warning(message, *args)

    def _count(self, name: str, amount: float = 1) -> None:
        """Add to one of the counters of :class:`RedisStats`."""
        self._counters.add(name, amount)

    def _hold(self, lease_key: str, value: str) -> None:
        """Keep renewing a lease while its load runs."""
        with self._lock:
            self._held[lease_key] = value

    def _unhold(self, lease_key: str) -> None:
        """Stop renewing a lease."""
        with self._lock:
            self._held.pop(lease_key, None)

    # -- the subscriber ----------------------------------------------------------------

    def _ensure_subscriber(self) -> None:
        """Start the subscriber thread unless it runs (cheap when it does)."""
        subscriber = self._subscriber
        if (subscriber is not None and subscriber.alive) or self._closed:
            return
        with self._lock:
            subscriber = self._subscriber
            if subscriber is None or not subscriber.alive:
                self._subscriber = Subscriber(
                    self._hooks,
                    timeout=self._timeout,
                    retry_interval=self._retry_interval,
                    name=f"seerrperf-redis[{self._namespace}]",
                )
                self._subscriber.start()

    def _subscribe(self, cache: str, callback: Callable[[Invalidation], None]) -> Subscription:
        """Register ``callback`` for ``cache``'s invalidations (see ``SharedTier.subscribe``)."""
        listener = _Listener(cache, _validate.function("callback", callback))
        with self._lock:
            self._listeners = (*self._listeners, listener)
        self._ensure_subscriber()
        return Subscription(self, listener)

    def _unsubscribe(self, listener: _Listener) -> None:
        with self._lock:
            self._listeners = tuple(known for known in self._listeners if known is not listener)

    def _dispatch(self, invalidation: Invalidation) -> None:
        for listener in self._listeners:
            if invalidation.cache is not None and listener.cache != invalidation.cache:
                continue
            try:
                listener.callback(invalidation)
            except Exception:
                if f"listener:{id(listener)}" not in self._logged:
                    self._logged.add(f"listener:{id(listener)}")
                    logger.exception(
                        "an invalidation listener of cache %r raised; it stays registered",
                        listener.cache,
                    )

    def _resync(self) -> None:
        from .tier import Invalidation

        self._counters.add("resyncs")
        self._dispatch(Invalidation("resync", None))
        self._waiters.wake_cache(None)

    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now < self._next_renewal:
            return
        self._next_renewal = now + self._lease_time / 3
        with self._lock:
            held = list(self._held.items())
        if not held or not self._breaker.closed:
            return
        lease_ms = max(1, round(self._lease_time * 1000))
        for start in range(0, len(held), DELETE_CHUNK):
            chunk = held[start : start + DELETE_CHUNK]
            reply = self._execute(
                RENEW, [key for key, _ in chunk], [lease_ms, *(value for _, value in chunk)]
            )
            if reply is FALLBACK:
                return
            with self._lock:
                for (key, value), kept in zip(chunk, reply, strict=False):
                    if not int(kept) and self._held.get(key) == value:
                        del self._held[key]


def _ignore(_reply: Any) -> None:
    return None


class _Hooks:
    """What the subscriber thread calls back; none of it raises."""

    __slots__ = ("_backend", "channel")

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend
        self.channel = backend._keyspace.channel

    def open_pubsub(self) -> Any:
        return self._backend._open_pubsub()

    def on_message(self, data: object) -> None:
        from .tier import Invalidation

        backend = self._backend
        try:
            message = parse_message(data)
            if message is None:
                # A message we cannot read may have been an invalidation.
                backend._log_once("bad-message", "an unreadable invalidation message: resyncing")
                backend._resync()
                return
            waiters = backend._waiters
            if message.op in ("keys", "wake"):
                assert message.cache is not None
                waiters.wake_keys(message.cache, message.digests)
            else:
                waiters.wake_cache(message.cache)
            if message.op == "wake" or message.source == backend.source_id:
                return
            backend._count("invalidations_received")
            backend._dispatch(Invalidation(message.op, message.cache, message.digests))
        except Exception:
            logger.exception("handling an invalidation message failed")

    def on_subscribed(self) -> None:
        backend = self._backend
        with backend._lock:
            backend._logged.discard("subscription")
        try:
            backend._resync()
        except Exception:
            logger.exception("resyncing after subscribing failed")

    def on_lost(self, error: BaseException, was_subscribed: bool) -> None:
        backend = self._backend
        backend._log_once(
            "subscription",
            "the Redis invalidation subscription is down (%s); local tiers are dropped "
            "when it is back",
            backend._describe(error),
        )
        if was_subscribed:
            try:
                backend._resync()
            except Exception:
                logger.exception("resyncing after losing the subscription failed")

    def housekeeping(self) -> None:
        try:
            self._backend._renew_leases()
        except Exception:
            logger.exception("renewing leases failed")
