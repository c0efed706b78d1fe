"""psycopg_pool pools with tuned, validated defaults.

Everything that does no I/O lives in two shared objects: :class:`_PoolPlan`
(validation, libpq parameters, the idle tracker behind ``check_idle``) and
:class:`_PoolCore` (what one pool knows at run time: the process that opened
it, checkouts in flight, the growth rule, how its connection attempts ended,
what the server enforces). The sync and async pools differ only in how they
wait: each is a thin subclass of psycopg_pool's own pool that asks the core
before and after psycopg_pool does its work.

The factories' ``clock=`` decides ``check_idle`` and the growth rule's
timings; psycopg_pool keeps its own time for ``max_idle``, ``max_lifetime``
and checkout timeouts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import psycopg
import psycopg.conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, PoolConfigurationError, PoolForkedError
from seerrperf._redact import dsn_secrets, redact
from seerrperf._runtime import Clock

from .connection import AsyncDeadlineConnection, DeadlineConnection, connection_class
from .growth import Growth, Sizes
from .watchdog import call_later, guard_check

__all__ = [
    "AsyncTunedConnectionPool",
    "PoolSettings",
    "PoolStats",
    "TunedConnectionPool",
    "async_pool_factory",
    "pool_factory",
]

logger = logging.getLogger("seerrperf.pool")

SyncConnection: TypeAlias = psycopg.Connection[TupleRow]
AsyncConnection: TypeAlias = psycopg.AsyncConnection[TupleRow]
SyncCallback: TypeAlias = Callable[[SyncConnection], None]
AsyncCallback: TypeAlias = Callable[[AsyncConnection], Awaitable[None]]

_APP_NAME_MAX = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names silently
_PG_MAX_MS = 2**31 - 1  # INT_MAX: the largest timeout PostgreSQL accepts, in milliseconds
_PG_MAX_TIMEOUT = _PG_MAX_MS // 1000  # whole seconds below it: about 24.8 days
_PG_MAX_BACKENDS = 2**18 - 1  # MAX_BACKENDS: no server accepts more connections
_TCP_MAX_KEEPIDLE = 32767  # Linux refuses a longer TCP_KEEPIDLE; libpq then fails to connect
_QUERY_TIMEOUT_MARGIN = 5.0  # the client waits this much longer than statement_timeout
_AUTO: Literal["auto"] = "auto"


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Tuned defaults for a PostgreSQL connection pool.

    Every field is validated on construction; a bad value raises
    :class:`~seerrperf.ConfigurationError` naming the field. Times are seconds.

    Attributes:
        min_size: Connections kept open even when idle (``0`` opens lazily).
        max_size: Hard cap on connections this pool opens on the server.
        max_idle: Close connections above ``min_size`` after this long unused.
        timeout: How long a checkout waits for a free connection before
            ``psycopg_pool.PoolTimeout`` (node-postgres waits forever by default).
        connect_timeout: libpq ``connect_timeout`` for each new connection, in
            whole seconds; psycopg treats anything below 2 as 2, so it must be >= 2.
        statement_timeout: Server-side limit per statement; ``None`` disables it.
            At most 2,147,483 s (24.8 days): PostgreSQL refuses ``INT_MAX`` ms or more.
        idle_in_transaction_timeout: Server ends sessions idle inside a
            transaction for longer than this; ``None`` disables it. Same limit.
        query_timeout: Client-side deadline for each command: when the server
            has not answered within it (a frozen server, a lost network), the
            connection's socket is shut down, the caller gets
            :class:`~seerrperf.QueryTimeout` and the connection is discarded.
            ``"auto"`` is ``statement_timeout`` plus 5 s, so the server's own
            timeout fires first, or no deadline when ``statement_timeout`` is
            ``None``; ``None`` disables it.
        keepalives_idle: TCP keepalive probes start after this many idle seconds,
            so half-open connections (NAT, failover) are noticed.
        max_lifetime: Connections are replaced after this long.
        max_waiting: Clients allowed to queue for a connection; beyond that
            checkouts fail at once with ``TooManyRequests`` (``0`` = unbounded).
        check: Verify a connection on checkout so a server restart never hands
            out a dead connection.
        check_idle: Only connections idle for longer than this are verified
            (HikariCP's rule); ``0`` verifies every checkout. A check on every
            checkout costs a round trip and halves the throughput of short queries.
        grow_after: The pool opens a connection beyond those it has only when a
            checkout waited this long, one at a time, and only while more
            connections make it faster (see ``docs/pool.md``); ``0`` grows as
            psycopg_pool does, whenever a request queues.
        application_name: Shown in ``pg_stat_activity``.
        pgbouncer: Connect through PgBouncer in transaction pooling: no startup
            ``options`` (PgBouncer rejects them), no session ``SET`` (it would
            leak to other clients), no server-side prepared statements unless
            ``prepare_threshold`` says so; the server's own timeouts are read
            at connect and a warning says once when they do not enforce ours.
        prepare_threshold: psycopg's ``prepare_threshold`` (executions of a
            query before it is prepared on the server; ``None`` never).
            ``"auto"`` is psycopg's default (5), or ``None`` with ``pgbouncer``;
            set a number with ``pgbouncer=True`` only for PgBouncer >= 1.21
            with ``max_prepared_statements`` on.
    """

    min_size: int = 2
    max_size: int = 20
    max_idle: float = 30.0
    timeout: float = 2.0
    connect_timeout: int = 2
    statement_timeout: float | None = 30.0
    idle_in_transaction_timeout: float | None = 60.0
    query_timeout: float | Literal["auto"] | None = _AUTO
    keepalives_idle: int = 10
    max_lifetime: float = 3600.0
    max_waiting: int = 0
    check: bool = True
    check_idle: float = 1.0
    grow_after: float = 0.01
    application_name: str = "seerrperf"
    pgbouncer: bool = False
    prepare_threshold: int | Literal["auto"] | None = _AUTO

    def __post_init__(self) -> None:
        _validate.count("min_size", self.min_size, maximum=_PG_MAX_BACKENDS)
        _validate.count("max_size", self.max_size, minimum=1, maximum=_PG_MAX_BACKENDS)
        _validate.count("max_waiting", self.max_waiting)
        _validate.whole_seconds(
            "keepalives_idle", self.keepalives_idle, minimum=1, maximum=_TCP_MAX_KEEPIDLE
        )
        _validate.whole_seconds("connect_timeout", self.connect_timeout, minimum=2)
        if self.min_size > self.max_size:
            raise ConfigurationError(
                f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})"
            )
        for name in ("max_idle", "timeout", "max_lifetime"):
            _validate.duration(name, getattr(self, name), allow_zero=False)
        for name in ("statement_timeout", "idle_in_transaction_timeout"):
            value = getattr(self, name)
            _validate.duration(
                name, value, allow_zero=False, allow_none=True, maximum=_PG_MAX_TIMEOUT
            )
        if self.query_timeout != _AUTO:
            _validate.duration(
                "query_timeout", self.query_timeout, allow_zero=False, allow_none=True
            )
        _validate.duration("check_idle", self.check_idle)
        _validate.duration("grow_after", self.grow_after)
        for name in ("check", "pgbouncer"):
            _validate.flag(name, getattr(self, name))
        _validate.name("application_name", self.application_name, max_bytes=_APP_NAME_MAX)
        if self.prepare_threshold != _AUTO and self.prepare_threshold is not None:
            _validate.count("prepare_threshold", self.prepare_threshold)

    def replace(self, **overrides: Any) -> PoolSettings:
        """Return a copy with some fields changed.

        Raises:
            ConfigurationError: an override names no field, or a value is invalid.
        """
        unknown = sorted(set(overrides) - _FIELD_NAMES)
        if unknown:
            raise ConfigurationError(
                f"unknown pool setting(s): {', '.join(unknown)}; "
                f"valid settings are: {', '.join(sorted(_FIELD_NAMES))}"
            )
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    def session_parameters(self) -> dict[str, str]:
        """Server parameters to set on every connection, in milliseconds."""
        params: dict[str, str] = {}
        if self.statement_timeout is not None:
            params["statement_timeout"] = str(_ms(self.statement_timeout))
        if self.idle_in_transaction_timeout is not None:
            params["idle_in_transaction_session_timeout"] = str(
                _ms(self.idle_in_transaction_timeout)
            )
        return params

    def effective_query_timeout(self) -> float | None:
        """The client-side deadline per command, in seconds (``"auto"`` resolved)."""
        if self.query_timeout != _AUTO:
            return None if self.query_timeout is None else float(self.query_timeout)
        if self.statement_timeout is None:
            return None
        return self.statement_timeout + _QUERY_TIMEOUT_MARGIN

    def effective_prepare_threshold(self) -> int | None:
        """psycopg's ``prepare_threshold`` for the connections (``"auto"`` resolved)."""
        threshold = self.prepare_threshold
        if threshold == "auto":
            return None if self.pgbouncer else _PSYCOPG_PREPARE_THRESHOLD
        return threshold


def _ms(seconds: float) -> int:
    return min(_PG_MAX_MS, max(1, round(seconds * 1000)))


_PSYCOPG_PREPARE_THRESHOLD = 5  # psycopg's own default
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(PoolSettings))
_DEFAULTS = PoolSettings()


class _IdleTracker:
    """Decides which checkouts need a liveness check, for ``check_idle``.

    It remembers, on the connection itself, when it was last checked out (or
    connected). That time is never later than when the connection went back
    to the pool, so "checked out less than ``check_idle`` ago" safely implies
    "idle for less than ``check_idle``". Tracking returns instead would need a
    pool ``reset`` callback, which makes psycopg_pool return every connection
    through a worker thread.
    """

    __slots__ = ("_check_idle", "_clock")

    def __init__(self, check_idle: float, clock: Clock) -> None:
        self._check_idle = check_idle
        self._clock = clock

    def mark(self, conn: object) -> None:
        setattr(conn, _CHECKED_AT, self._clock())

    def due(self, conn: object) -> bool:
        """Record a checkout of ``conn``; return whether it must be verified."""
        now = self._clock()
        since: float | None = getattr(conn, _CHECKED_AT, None)
        setattr(conn, _CHECKED_AT, now)
        return since is None or now - since >= self._check_idle


_CHECKED_AT = "_seerrperf_checked_at"


_SERVER_SETTINGS_QUERY = (
    # In milliseconds, as this session has them: what the server applies to us.
    "SELECT current_user::text,"
    " (SELECT setting FROM pg_settings WHERE name = 'statement_timeout'),"
    " (SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout')"
)


@dataclass(frozen=True, slots=True)
class _PoolPlan:
    """Everything a pool needs that can be computed without I/O."""

    conninfo: str
    kwargs: dict[str, Any]
    settings: PoolSettings
    query_timeout: float | None
    tracker: _IdleTracker | None
    clock: Clock
    secrets: tuple[str, ...] = field(repr=False)

    @classmethod
    def build(
        cls,
        dsn: str | None,
        settings: PoolSettings | None,
        kwargs: Mapping[str, Any] | None,
        overrides: Mapping[str, Any],
        name: str | None,
        clock: Clock,
        configure: object,
        reset: object,
    ) -> _PoolPlan:
        """Check every factory argument (named as the factories name them) and plan the pool."""
        if settings is not None:
            _validate.instance("settings", settings, PoolSettings, "a PoolSettings")
        if kwargs is not None:
            _validate.instance("kwargs", kwargs, Mapping, "a mapping of connection parameters")
        if name is not None:
            _validate.name("name", name)
        _validate.function("clock", clock, "a clock like time.monotonic")
        for arg, callback in (("configure", configure), ("reset", reset)):
            if callback is not None:
                _validate.function(arg, callback, "a function taking the connection")
        base = settings or _DEFAULTS
        final = base.replace(**overrides) if overrides else base
        explicit = set(overrides) | {
            f for f in _FIELD_NAMES if getattr(base, f) != getattr(_DEFAULTS, f)
        }
        conninfo, dsn_params = _resolve_dsn(dsn)
        libpq = _libpq_params(final, dsn_params, explicit, dict(kwargs or {}))
        tracker = (
            _IdleTracker(final.check_idle, clock) if final.check and final.check_idle > 0 else None
        )
        return cls(
            conninfo=conninfo,
            kwargs=libpq,
            settings=final,
            query_timeout=final.effective_query_timeout(),
            tracker=tracker,
            clock=clock,
            secrets=dsn_secrets(conninfo),
        )

    def pool_arguments(self, name: str | None, limit: int) -> dict[str, Any]:
        s = self.settings
        return {
            "conninfo": self.conninfo,
            "kwargs": self.kwargs,
            "min_size": s.min_size,
            "max_size": limit,
            "max_idle": s.max_idle,
            "max_lifetime": s.max_lifetime,
            "max_waiting": s.max_waiting,
            "timeout": s.timeout,
            "name": name,
            "open": False,
        }

    def reconnect_failed_message(self, pool_name: str) -> str:
        return redact(
            f"pool {pool_name!r} could not reconnect to the database; "
            "it keeps trying in the background",
            self.secrets,
        )


def _resolve_dsn(dsn: str | None) -> tuple[str, dict[str, Any]]:
    if dsn is None:
        dsn = os.environ.get("DATABASE_URL")
        source = "the DATABASE_URL environment variable"
    else:
        source = "the dsn argument"
    if dsn is not None:
        _validate.instance("dsn", dsn, str, "a string")
    if not dsn or not dsn.strip():
        raise ConfigurationError(
            "no database DSN: pass dsn='postgresql://user@host/db' or set DATABASE_URL"
        )
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        reason = _scrub_libpq_message(str(exc), dsn)
        error = ConfigurationError(f"{source} is not a valid PostgreSQL DSN: {reason}")
    else:
        return dsn, params
    # Raised outside the except block so the driver's message, which may quote
    # parts of the DSN, is not chained onto ours.
    raise error


def _scrub_libpq_message(message: str, dsn: str) -> str:
    # libpq quotes fragments of the DSN it could not parse; a fragment may be a
    # password, so quoted text is dropped altogether.
    message = re.sub(r'"[^"]*"', '"…"', message.strip().splitlines()[0] if message else "")
    return redact(message, dsn_secrets(dsn)) or "unparsable"


def _libpq_params(
    s: PoolSettings, dsn_params: Mapping[str, Any], explicit: set[str], user: dict[str, Any]
) -> dict[str, Any]:
    ours: dict[str, Any] = {
        "connect_timeout": s.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": s.keepalives_idle,
        "keepalives_interval": max(1, s.keepalives_idle // 2),
        "keepalives_count": 3,
        "application_name": s.application_name,
    }
    params: dict[str, Any] = {}
    for key, value in ours.items():
        # A parameter written in the DSN wins over a default, not over an
        # explicit override (the settable ones are named like their fields).
        if key in dsn_params and key not in explicit:
            continue
        params[key] = value
    if not s.pgbouncer:
        ours_opts = " ".join(f"-c {k}={v}" for k, v in s.session_parameters().items())
        timeouts_explicit = bool({"statement_timeout", "idle_in_transaction_timeout"} & explicit)
        parts = (
            [dsn_params.get("options", ""), ours_opts]
            if timeouts_explicit
            else [ours_opts, dsn_params.get("options", "")]
        )
        # PostgreSQL applies "-c" options left to right: the later one wins.
        parts.append(user.pop("options", ""))
        options = " ".join(p for p in parts if p)
        if options:
            params["options"] = options
    threshold = s.effective_prepare_threshold()
    if threshold != _PSYCOPG_PREPARE_THRESHOLD:
        params["prepare_threshold"] = threshold  # a psycopg.connect() argument, not libpq's
    params.update(user)
    return params


# --- what a pool knows at run time ----------------------------------------------------------

# Connection errors that retrying cannot fix: the server refuses how we connect.
_REFUSED_PARAMETER = re.compile(
    r"unsupported startup parameter: ?(?P<pgbouncer>[\w.]+)"
    r"|invalid value for parameter \"(?P<value>[\w.]+)\""
    r"|unrecognized configuration parameter \"(?P<unknown>[\w.]+)\""
)
_MAX_SERVER_TEXT = 160


def _refusal(error: BaseException, secrets: tuple[str, ...], pgbouncer: bool) -> str | None:
    """The message for a connection error caused by the pool's configuration, if it is one."""
    text = " ".join(str(error).split())
    found = _REFUSED_PARAMETER.search(text)
    if found is None:
        return None
    said = redact(text[found.start() : found.start() + _MAX_SERVER_TEXT], secrets)
    if found.group("pgbouncer"):
        if found.group("pgbouncer") == "options" and not pgbouncer:
            fix = (
                "seerrperf sends statement_timeout and idle_in_transaction_session_timeout "
                "as startup options, which PgBouncer rejects: pass pgbouncer=True "
                "(then have the server enforce the timeouts, see docs/pgbouncer.md)"
            )
        else:
            fix = (
                f"remove {found.group('pgbouncer')!r} from the DSN or kwargs, "
                "or list it in PgBouncer's ignore_startup_parameters"
            )
        return f"PgBouncer refused the connection's startup parameters ({said}): {fix}"
    parameter = found.group("value") or found.group("unknown")
    return (
        f"the server refused the connection's startup options ({said}): "
        f"fix the value of {parameter!r} in the pool settings, the DSN or kwargs"
    )


def _parse_pg_ms(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _shown_ms(ms: int | None) -> str:
    if ms is None:
        return "unknown"
    return "0 (off)" if ms == 0 else f"{ms} ms"


@dataclass(frozen=True, slots=True)
class PoolStats:
    """What a seerrperf pool reports about itself: ``pool.stats()``.

    psycopg_pool's counters (``requests_num`` ... ``connections_lost``, zero
    when psycopg_pool omits them) plus figures that stay true during an
    outage and what the server is known to enforce.

    Attributes:
        name: The pool's name.
        pool_min: ``min_size``.
        pool_max: ``max_size``: the most connections the pool may ever open.
        pool_limit: How many it may have now (the growth rule's limit).
        pool_size: Connections open now: idle plus checked out. Attempts
            still connecting are not counted (psycopg_pool counts them).
        pool_available: Idle connections ready in the pool.
        in_use: Connections checked out now.
        connections_pending: Connections being opened (or reopened after a
            loss), which are not open yet.
        requests_waiting: Callers waiting for a connection now (never more
            than there are callers; psycopg_pool also counts callers that
            already gave up).
        requests_num: Checkouts requested.
        requests_queued: Checkouts that had to wait.
        requests_wait_ms: Total time checkouts waited.
        requests_errors: Checkouts that failed or timed out.
        usage_ms: Total time connections were in use.
        returns_bad: Connections returned broken.
        connections_num: Connection attempts.
        connections_ms: Total time spent connecting.
        connections_errors: Failed connection attempts.
        connections_lost: Connections found broken by a check.
        utilisation: ``in_use / pool_max``.
        avg_wait_ms: Mean wait of the checkouts that queued.
        grows: Times the growth rule added a connection.
        query_timeouts: Commands that reached ``query_timeout`` (their
            connections were closed).
        statement_timeout_ms: The ``statement_timeout`` the server applies to
            this pool's statements, in ms (``0`` = none); ``None`` until known.
            Sent as a startup option, or read from the server with ``pgbouncer``.
        idle_in_transaction_timeout_ms: The same for
            ``idle_in_transaction_session_timeout``.
        server_timeouts_enforced: Whether the server enforces the settings'
            timeouts (or stricter ones); ``None`` until known.
        configuration_error: Why the server refuses the pool's connections,
            while it does; ``None`` otherwise.
        forked: The pool was opened in another process (this one is a fork).
    """

    name: str
    pool_min: int
    pool_max: int
    pool_limit: int
    pool_size: int
    pool_available: int
    in_use: int
    connections_pending: int
    requests_waiting: int
    requests_num: int
    requests_queued: int
    requests_wait_ms: int
    requests_errors: int
    usage_ms: int
    returns_bad: int
    connections_num: int
    connections_ms: int
    connections_errors: int
    connections_lost: int
    utilisation: float
    avg_wait_ms: float
    grows: int
    query_timeouts: int
    statement_timeout_ms: int | None
    idle_in_transaction_timeout_ms: int | None
    server_timeouts_enforced: bool | None
    configuration_error: str | None
    forked: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the statistics as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


_PSYCOPG_COUNTERS = (
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
)


class _PoolCore:
    """The run-time state of one pool that involves no I/O, shared by both twins.

    The sync pool calls it from many threads: everything that changes
    several fields together runs under ``lock``.
    """

    def __init__(self, plan: _PoolPlan) -> None:
        s = plan.settings
        self.plan: _PoolPlan = plan
        self.clock: Clock = plan.clock
        self.lock: threading.Lock = threading.Lock()
        self.growth: Growth = Growth(s.min_size, s.max_size, s.grow_after, s.max_idle)
        self.opened_pid: int | None = None
        self._tokens: Iterator[int] = itertools.count()
        self.waiters: dict[int, float] = {}  # token -> when the caller started waiting
        self.ticking: bool = False
        # When the ticker's next beat is due: its lateness shows congestion.
        self._beat_due: float = 0.0
        self._queue_since: float = 0.0  # since when requests wait without a break
        self.out: dict[int, float] = {}  # id(connection) -> when it was checked out
        self.query_timeouts: int = 0
        self.refused: str | None = None  # why the server refuses our connections, while it does
        self.warned: bool = False
        self.statement_timeout_ms: int | None = None
        self.idle_timeout_ms: int | None = None
        self.enforced: bool | None = None
        if not s.pgbouncer:
            # Sent as startup options: a session exists only if the server took them.
            params = s.session_parameters()
            self.statement_timeout_ms = int(params.get("statement_timeout", 0)) or None
            self.idle_timeout_ms = int(params.get("idle_in_transaction_session_timeout", 0)) or None
            self.enforced = True

    # process

    def opening(self, pool_name: str) -> None:
        self.check_process(pool_name)
        self.opened_pid = os.getpid()

    def forked(self) -> bool:
        return self.opened_pid is not None and self.opened_pid != os.getpid()

    def check_process(self, pool_name: str) -> None:
        if self.forked():
            raise PoolForkedError(
                f"pool {pool_name!r} was opened in process {self.opened_pid}, "
                f"and this process ({os.getpid()}) is a fork of it: its connections "
                "belong to the parent. Create and open the pool in each worker after "
                "the fork (gunicorn --preload: in a post_fork hook or the app's startup; "
                "see docs/pool.md)"
            )

    # connection attempts (called by the connection class)

    def connected(self) -> None:
        self.refused = None

    def connect_failed(self, error: BaseException) -> None:
        refusal = _refusal(error, self.plan.secrets, self.plan.settings.pgbouncer)
        if refusal is not None:
            if refusal != self.refused:
                logger.error("%s", refusal)
            self.refused = refusal

    def timed_out(self) -> None:
        with self.lock:
            self.query_timeouts += 1

    # checkouts

    def checkout_starts(self) -> tuple[int, bool]:
        """Register a caller waiting for a connection: its token, and whether to
        start the growth ticker (it runs while anyone waits)."""
        now = self.clock()
        with self.lock:
            token = next(self._tokens)
            self.waiters[token] = now
            start_ticker = self.growth.enabled and not self.ticking
            if start_ticker:
                self.ticking = True
                self._queue_since = now
                self._beat_due = now + self.growth.grow_after
        return token, start_ticker

    def checkout_ends(self, token: int, conn: object | None) -> None:
        """The caller got ``conn`` (or nothing: its checkout failed)."""
        now = self.clock()
        with self.lock:
            del self.waiters[token]
            if conn is not None:
                self.out[id(conn)] = now

    def returned(self, conn: object) -> None:
        now = self.clock()
        with self.lock:
            since = self.out.pop(id(conn), None)
            if since is not None:
                self.growth.returned(now - since)

    def tick(self, name: str, sizes: Callable[[], Sizes]) -> tuple[int | None, float | None]:
        """One beat of the growth ticker.

        Returns:
            The new limit when one connection is to be added (else ``None``),
            and the delay before the next beat (``None``: nobody waits, stop).
        """
        grow_after = self.growth.grow_after
        now = self.clock()
        with self.lock:
            lag = now - self._beat_due
            if not self.waiters:
                self.ticking = False
                self.growth.idle()
                return None, None
            waited = now - min(self.waiters.values())
            if waited < grow_after:
                self._beat_due = now + grow_after - waited
                return None, grow_after - waited
            holder, since = min(self.out.items(), key=_second, default=(None, now))
            growth = self.growth
            limit = growth.decide(
                waited,
                holder,
                now - since,
                sizes(),
                now,
                lag=lag,
                queued_for=now - self._queue_since,
            )
            reason, note, growth.note = growth.reason, growth.note, ""
            self._beat_due = now + grow_after
        if note:
            logger.info("pool %r: %s", name, note)
        if limit is not None:
            logger.info("pool %r grows to %d connections: %s", name, limit, reason)
        return limit, grow_after

    def decay(self, managed: int) -> int | None:
        with self.lock:
            return self.growth.decay(managed)

    def resized(self, min_size: int, max_size: int) -> int:
        with self.lock:
            return self.growth.resize(min_size, max_size)

    # what the server enforces (PgBouncer mode reads it at connect)

    def observed(self, row: tuple[Any, ...] | None, pool_name: str) -> None:
        if row is None:
            return
        user, statement_raw, idle_raw = row
        statement, idle = _parse_pg_ms(statement_raw), _parse_pg_ms(idle_raw)
        params = self.plan.settings.session_parameters()
        wanted_statement = _parse_pg_ms(params.get("statement_timeout"))
        wanted_idle = _parse_pg_ms(params.get("idle_in_transaction_session_timeout"))
        enforced = _enforces(statement, wanted_statement) and _enforces(idle, wanted_idle)
        with self.lock:
            self.statement_timeout_ms, self.idle_timeout_ms = statement, idle
            self.enforced = enforced
            warn = not enforced and not self.warned
            self.warned = self.warned or warn
        if warn:
            logger.warning(
                "%s",
                self._not_enforced_message(
                    pool_name, str(user), statement, wanted_statement, idle, wanted_idle
                ),
            )

    def _not_enforced_message(
        self,
        pool_name: str,
        user: str,
        statement: int | None,
        wanted_statement: int | None,
        idle: int | None,
        wanted_idle: int | None,
    ) -> str:
        role = _role_name(user)
        problems, fixes = [], []
        for setting, server, wanted in (
            ("statement_timeout", statement, wanted_statement),
            ("idle_in_transaction_session_timeout", idle, wanted_idle),
        ):
            if not _enforces(server, wanted):
                problems.append(
                    f"{setting} is {_shown_ms(server)} on the server (the pool asks {wanted} ms)"
                )
                fixes.append(f"ALTER ROLE {role} SET {setting} = {wanted};")
        deadline = self.plan.query_timeout
        client = (
            f"only query_timeout ({deadline:g} s, client-side) bounds a command"
            if deadline is not None
            else "nothing bounds a command (query_timeout is off)"
        )
        return redact(
            f"pool {pool_name!r} (pgbouncer=True) cannot guarantee its timeouts: "
            f"{'; '.join(problems)}. It sends no SET: in transaction pooling a session SET "
            "sticks to one server connection and leaks to other clients. Make the server "
            f"enforce them: {' '.join(fixes)} (or connect_query in the database's entry in "
            f"pgbouncer.ini). Until then {client}.",
            self.plan.secrets,
        )

    # statistics

    def stats(self, name: str, raw: Mapping[str, int], available: int) -> PoolStats:
        with self.lock:
            in_use = len(self.out)
            waiting = len(self.waiters)
            growth = self.growth
            limit, grows, timeouts = growth.limit, growth.grows, self.query_timeouts
            pool_min, pool_max = growth.min_size, growth.max_size
        size = available + in_use
        counters = {key: int(raw.get(key, 0)) for key in _PSYCOPG_COUNTERS}
        queued = counters["requests_queued"]
        return PoolStats(
            name=name,
            pool_min=pool_min,
            pool_max=pool_max,
            pool_limit=limit,
            pool_size=size,
            pool_available=available,
            in_use=in_use,
            connections_pending=max(0, int(raw.get("pool_size", 0)) - size),
            requests_waiting=waiting,
            utilisation=in_use / pool_max if pool_max else 0.0,
            avg_wait_ms=counters["requests_wait_ms"] / queued if queued else 0.0,
            grows=grows,
            query_timeouts=timeouts,
            statement_timeout_ms=self.statement_timeout_ms,
            idle_in_transaction_timeout_ms=self.idle_timeout_ms,
            server_timeouts_enforced=self.enforced,
            configuration_error=self.refused,
            forked=self.forked(),
            **counters,
        )

    def true_measures(self, raw: dict[str, int]) -> dict[str, int]:
        """psycopg_pool's ``get_stats()`` with the figures that lie during an outage fixed."""
        with self.lock:
            in_use = len(self.out)
            raw["requests_waiting"] = len(self.waiters)
            raw["pool_max"] = self.growth.max_size
            raw["pool_limit"] = self.growth.limit
        size = raw.get("pool_available", 0) + in_use
        raw["connections_pending"] = max(0, raw.get("pool_size", 0) - size)
        raw["pool_size"] = size
        return raw


def _role_name(user: str) -> str:
    """``user`` as an SQL identifier, quoted only when it must be."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", user):
        return user
    return '"' + user.replace('"', '""') + '"'


def _second(item: tuple[int, float]) -> float:
    return item[1]


def _enforces(server_ms: int | None, wanted_ms: int | None) -> bool:
    if wanted_ms is None:
        return True
    return server_ms is not None and 0 < server_ms <= wanted_ms


class _Events:
    """What a pool's connection class reports, passed on to its core."""

    __slots__ = ("_core",)

    def __init__(self, core: _PoolCore) -> None:
        self._core = core

    def connected(self) -> None:
        self._core.connected()

    def connect_failed(self, error: BaseException) -> None:
        self._core.connect_failed(error)

    def timed_out(self) -> None:
        self._core.timed_out()


def _fail_fast(core: _PoolCore, open_now: Callable[[], int]) -> None:
    # While the server refuses every connection attempt and nothing is open,
    # waiting for the checkout timeout tells the caller nothing new.
    refused = core.refused
    if refused is not None and open_now() == 0:
        raise PoolConfigurationError(refused)


def _log_reconnect_failed(plan: _PoolPlan, pool_name: str) -> None:
    logger.error(plan.reconnect_failed_message(pool_name))


class TunedConnectionPool(ConnectionPool[SyncConnection]):
    """The ``psycopg_pool.ConnectionPool`` that :func:`pool_factory` returns.

    Everything psycopg_pool documents applies. In addition it refuses to
    serve a process forked from the one that opened it
    (:class:`~seerrperf.PoolForkedError`), raises
    :class:`~seerrperf.PoolConfigurationError` instead of ``PoolTimeout`` when
    the server refuses how it connects, grows by the rule in
    ``docs/pool.md``, and reports true figures in ``get_stats()`` and
    :meth:`stats`. Create it with :func:`pool_factory`.
    """

    def __init__(self, plan: _PoolPlan, core: _PoolCore, name: str | None, **kwargs: Any) -> None:
        self._seerrperf = core
        super().__init__(**plan.pool_arguments(name, core.growth.limit), **kwargs)

    @property
    def max_size(self) -> int:
        """The most connections the pool may open (the growth rule opens fewer)."""
        return self._seerrperf.growth.max_size

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool (psycopg_pool's ``open``), remembering which process did.

        Raises:
            PoolForkedError: the pool was opened in a parent of this process.
        """
        core = self._seerrperf
        first = core.opened_pid is None
        core.opening(self.name)
        super().open(wait=wait, timeout=timeout)
        if first and core.growth.enabled:
            _every_max_idle(weakref.ref(self), core.plan.settings.max_idle)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool; in a forked child, leave the parent's connections alone."""
        if self._seerrperf.forked():
            return  # closing them here would end the parent's sessions on the server
        super().close(timeout=timeout)

    def getconn(self, timeout: float | None = None) -> SyncConnection:
        """Check a connection out (psycopg_pool's ``getconn``), see the class docstring.

        Raises:
            PoolForkedError: the pool was opened in a parent of this process.
            PoolConfigurationError: the server refuses the pool's connections.
        """
        core = self._seerrperf
        if core.opened_pid is not None and core.opened_pid != os.getpid():
            core.check_process(self.name)
        if core.refused is not None:
            _fail_fast(core, self._open_now)
        token, start_ticker = core.checkout_starts()
        if start_ticker:
            call_later(core.growth.grow_after, functools.partial(_tick, weakref.ref(self)))
        try:
            conn = super().getconn(timeout)
        except BaseException as exc:
            core.checkout_ends(token, None)
            refused = core.refused
            if isinstance(exc, PoolTimeout) and refused is not None:
                raise PoolConfigurationError(refused) from exc
            raise
        core.checkout_ends(token, conn)
        return conn

    def putconn(self, conn: SyncConnection) -> None:
        """Return a connection (psycopg_pool's ``putconn``)."""
        self._seerrperf.returned(conn)
        super().putconn(conn)

    def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change ``min_size`` and ``max_size``; the growth rule keeps working within them."""
        min_size, max_size = self._check_size(min_size, max_size)
        super().resize(min_size, self._seerrperf.resized(min_size, max_size))

    def get_stats(self) -> dict[str, int]:
        """psycopg_pool's statistics, with ``pool_size`` and ``requests_waiting`` true."""
        return self._seerrperf.true_measures(super().get_stats())

    def pop_stats(self) -> dict[str, int]:
        """As :meth:`get_stats`, then reset the counters (psycopg_pool's ``pop_stats``)."""
        return self._seerrperf.true_measures(super().pop_stats())

    def stats(self) -> PoolStats:
        """Return a :class:`PoolStats` snapshot."""
        raw = super().get_stats()
        return self._seerrperf.stats(self.name, raw, raw.get("pool_available", 0))

    def _grow_to(self, limit: int) -> None:
        # Raising min_size by one opens one connection now (psycopg_pool opens
        # connections on its own only when the next request queues); the
        # second call puts min_size back, so it can close again when idle.
        low = self._seerrperf.growth.min_size
        ConnectionPool.resize(self, low + 1, limit)
        ConnectionPool.resize(self, low, limit)

    def _set_limit(self, limit: int) -> None:
        ConnectionPool.resize(self, self._seerrperf.growth.min_size, limit)

    def _sizes(self) -> Sizes:
        raw = ConnectionPool.get_stats(self)
        return Sizes(managed=raw.get("pool_size", 0), open=self._open_now(raw))

    def _open_now(self, raw: Mapping[str, int] | None = None) -> int:
        raw = ConnectionPool.get_stats(self) if raw is None else raw
        return raw.get("pool_available", 0) + len(self._seerrperf.out)


def _tick(ref: weakref.ref[TunedConnectionPool]) -> None:
    pool = ref()
    if pool is None or pool.closed:
        return
    limit, delay = pool._seerrperf.tick(pool.name, pool._sizes)
    if limit is not None:
        pool._grow_to(limit)
    if delay is not None:
        call_later(delay, functools.partial(_tick, ref))


def _every_max_idle(ref: weakref.ref[TunedConnectionPool], period: float) -> None:
    def decay() -> None:
        pool = ref()
        if pool is None or pool.closed:
            return
        limit = pool._seerrperf.decay(pool._sizes().managed)
        if limit is not None:
            pool._set_limit(limit)
        call_later(period, decay)

    call_later(period, decay)


class AsyncTunedConnectionPool(AsyncConnectionPool[AsyncConnection]):
    """The ``psycopg_pool.AsyncConnectionPool`` that :func:`async_pool_factory` returns.

    The async twin of :class:`TunedConnectionPool`; its growth decisions run
    on the event loop that opened it.
    """

    def __init__(self, plan: _PoolPlan, core: _PoolCore, name: str | None, **kwargs: Any) -> None:
        self._seerrperf = core
        self._seerrperf_tasks: set[asyncio.Task[None]] = set()
        super().__init__(**plan.pool_arguments(name, core.growth.limit), **kwargs)

    @property
    def max_size(self) -> int:
        """The most connections the pool may open (the growth rule opens fewer)."""
        return self._seerrperf.growth.max_size

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool (psycopg_pool's ``open``), remembering which process did.

        Raises:
            PoolForkedError: the pool was opened in a parent of this process.
        """
        core = self._seerrperf
        first = core.opened_pid is None
        core.opening(self.name)
        await super().open(wait=wait, timeout=timeout)
        if first and core.growth.enabled:
            _aevery_max_idle(weakref.ref(self), core.plan.settings.max_idle)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool; in a forked child, leave the parent's connections alone."""
        if self._seerrperf.forked():
            return  # closing them here would end the parent's sessions on the server
        await super().close(timeout=timeout)

    async def getconn(self, timeout: float | None = None) -> AsyncConnection:
        """Check a connection out (psycopg_pool's ``getconn``), see the class docstring.

        Raises:
            PoolForkedError: the pool was opened in a parent of this process.
            PoolConfigurationError: the server refuses the pool's connections.
        """
        core = self._seerrperf
        if core.opened_pid is not None and core.opened_pid != os.getpid():
            core.check_process(self.name)
        if core.refused is not None:
            _fail_fast(core, self._open_now)
        token, start_ticker = core.checkout_starts()
        if start_ticker:
            loop = asyncio.get_running_loop()
            loop.call_later(core.growth.grow_after, _atick, weakref.ref(self))
        try:
            conn = await super().getconn(timeout)
        except BaseException as exc:
            core.checkout_ends(token, None)
            refused = core.refused
            if isinstance(exc, PoolTimeout) and refused is not None:
                raise PoolConfigurationError(refused) from exc
            raise
        core.checkout_ends(token, conn)
        return conn

    async def putconn(self, conn: AsyncConnection) -> None:
        """Return a connection (psycopg_pool's ``putconn``)."""
        self._seerrperf.returned(conn)
        await super().putconn(conn)

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        """Change ``min_size`` and ``max_size``; the growth rule keeps working within them."""
        min_size, max_size = self._check_size(min_size, max_size)
        await super().resize(min_size, self._seerrperf.resized(min_size, max_size))

    def get_stats(self) -> dict[str, int]:
        """psycopg_pool's statistics, with ``pool_size`` and ``requests_waiting`` true."""
        return self._seerrperf.true_measures(super().get_stats())

    def pop_stats(self) -> dict[str, int]:
        """As :meth:`get_stats`, then reset the counters (psycopg_pool's ``pop_stats``)."""
        return self._seerrperf.true_measures(super().pop_stats())

    def stats(self) -> PoolStats:
        """Return a :class:`PoolStats` snapshot."""
        raw = super().get_stats()
        return self._seerrperf.stats(self.name, raw, raw.get("pool_available", 0))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._seerrperf_tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._seerrperf_tasks.discard)

    async def _grow_to(self, limit: int) -> None:
        # As TunedConnectionPool._grow_to: one connection now, min_size back.
        low = self._seerrperf.growth.min_size
        await AsyncConnectionPool.resize(self, low + 1, limit)
        await AsyncConnectionPool.resize(self, low, limit)

    async def _set_limit(self, limit: int) -> None:
        await AsyncConnectionPool.resize(self, self._seerrperf.growth.min_size, limit)

    def _sizes(self) -> Sizes:
        raw = AsyncConnectionPool.get_stats(self)
        return Sizes(managed=raw.get("pool_size", 0), open=self._open_now(raw))

    def _open_now(self, raw: Mapping[str, int] | None = None) -> int:
        raw = AsyncConnectionPool.get_stats(self) if raw is None else raw
        return raw.get("pool_available", 0) + len(self._seerrperf.out)


def _atick(ref: weakref.ref[AsyncTunedConnectionPool]) -> None:
    pool = ref()
    if pool is None or pool.closed:
        return
    limit, delay = pool._seerrperf.tick(pool.name, pool._sizes)
    if limit is not None:
        pool._spawn(pool._grow_to(limit))
    if delay is not None:
        asyncio.get_running_loop().call_later(delay, _atick, ref)


def _aevery_max_idle(ref: weakref.ref[AsyncTunedConnectionPool], period: float) -> None:
    loop = asyncio.get_running_loop()

    def decay() -> None:
        pool = ref()
        if pool is None or pool.closed:
            return
        limit = pool._seerrperf.decay(pool._sizes().managed)
        if limit is not None:
            pool._spawn(pool._set_limit(limit))
        loop.call_later(period, decay)

    loop.call_later(period, decay)


def _plan_and_core(
    dsn: str | None,
    settings: PoolSettings | None,
    kwargs: Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    name: str | None,
    clock: Clock,
    configure: object,
    reset: object,
) -> tuple[_PoolPlan, _PoolCore, _Events]:
    plan = _PoolPlan.build(dsn, settings, kwargs, overrides, name, clock, configure, reset)
    core = _PoolCore(plan)
    return plan, core, _Events(core)


def pool_factory(
    dsn: str | None = None,
    *,
    settings: PoolSettings | None = None,
    kwargs: Mapping[str, Any] | None = None,
    configure: SyncCallback | None = None,
    reset: SyncCallback | None = None,
    name: str | None = None,
    clock: Clock = time.monotonic,
    **overrides: Any,
) -> TunedConnectionPool:
    """Create an unopened ``psycopg_pool.ConnectionPool`` with tuned defaults.

    Use it as a context manager, which opens and closes it::

        with pool_factory() as pool:
            with pool.connection() as conn:
                conn.execute("SELECT 1")

    Args:
        dsn: libpq connection string or URI; defaults to ``$DATABASE_URL``.
            Parameters written in the DSN win over seerrperf's defaults.
        settings: A :class:`PoolSettings`; defaults to ``PoolSettings()``.
        kwargs: Extra connection parameters passed to ``psycopg.connect``;
            they win over everything else (``options`` are appended).
        configure: Called on each new connection after seerrperf's own setup.
        reset: Called on each connection returned to the pool.
        name: Pool name (shown in logs and stats).
        clock: Decides which connections have been idle longer than
            ``check_idle``, and times the growth rule (tests pass a
            :class:`~seerrperf.testing.FakeClock`).
        **overrides: :class:`PoolSettings` fields, e.g. ``max_size=5``.

    Returns:
        The pool (a :class:`TunedConnectionPool`), not yet opened.

    Raises:
        ConfigurationError: no DSN, an unparsable DSN, an unknown override or an
            invalid value (a callback or ``clock`` that cannot be called
            included). The message never contains the password.
    """
    plan, core, events = _plan_and_core(
        dsn, settings, kwargs, overrides, name, clock, configure, reset
    )
    tracker = plan.tracker
    read_server = plan.settings.pgbouncer

    def _configure(conn: SyncConnection) -> None:
        if read_server:
            core.observed(conn.execute(_SERVER_SETTINGS_QUERY).fetchone(), pool.name)
            conn.commit()
        if configure is not None:
            configure(conn)
        if tracker is not None:
            tracker.mark(conn)

    def _check(conn: SyncConnection) -> None:
        if tracker is None or tracker.due(conn):
            with guard_check(conn):
                ConnectionPool.check_connection(conn)

    def _reconnect_failed(pool: ConnectionPool[Any]) -> None:
        _log_reconnect_failed(plan, pool.name)

    pool = TunedConnectionPool(
        plan,
        core,
        name=name,
        connection_class=connection_class(DeadlineConnection, plan.query_timeout, events),
        configure=_configure,
        reset=reset,
        check=_check if plan.settings.check else None,
        reconnect_failed=_reconnect_failed,
    )
    return pool


def async_pool_factory(
    dsn: str | None = None,
    *,
    settings: PoolSettings | None = None,
    kwargs: Mapping[str, Any] | None = None,
    configure: AsyncCallback | None = None,
    reset: AsyncCallback | None = None,
    name: str | None = None,
    clock: Clock = time.monotonic,
    **overrides: Any,
) -> AsyncTunedConnectionPool:
    """Create an unopened ``psycopg_pool.AsyncConnectionPool`` with tuned defaults.

    The async twin of :func:`pool_factory`, with the same arguments (callbacks
    are coroutine functions)::

        async with async_pool_factory() as pool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    Returns:
        The pool (an :class:`AsyncTunedConnectionPool`), not yet opened.

    Raises:
        ConfigurationError: as :func:`pool_factory`.
    """
    plan, core, events = _plan_and_core(
        dsn, settings, kwargs, overrides, name, clock, configure, reset
    )
    tracker = plan.tracker
    read_server = plan.settings.pgbouncer

    async def _configure(conn: AsyncConnection) -> None:
        if read_server:
            cursor = await conn.execute(_SERVER_SETTINGS_QUERY)
            core.observed(await cursor.fetchone(), pool.name)
            await conn.commit()
        if configure is not None:
            await configure(conn)
        if tracker is not None:
            tracker.mark(conn)

    async def _check(conn: AsyncConnection) -> None:
        if tracker is None or tracker.due(conn):
            with guard_check(conn, on_loop=True):
                await AsyncConnectionPool.check_connection(conn)

    async def _reconnect_failed(pool: AsyncConnectionPool[Any]) -> None:
        _log_reconnect_failed(plan, pool.name)

    pool = AsyncTunedConnectionPool(
        plan,
        core,
        name=name,
        connection_class=connection_class(AsyncDeadlineConnection, plan.query_timeout, events),
        configure=_configure,
        reset=reset,
        check=_check if plan.settings.check else None,
        reconnect_failed=_reconnect_failed,
    )
    return pool
