"""psycopg_pool pools with tuned, validated defaults.

Everything that does no I/O (validation, libpq parameters, the idle tracker
behind ``check_idle``) lives in :class:`_PoolPlan` and is shared by the sync
and async factories; they differ only in the callbacks they hand to the pool.
The factories' ``clock=`` decides ``check_idle``, nothing else: psycopg_pool
keeps its own time for ``max_idle``, ``max_lifetime`` and checkout timeouts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import psycopg
import psycopg.conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._redact import dsn_secrets, redact
from seerrperf._runtime import Clock

from .watchdog import guard_check

__all__ = ["PoolSettings", "async_pool_factory", "pool_factory"]

logger = logging.getLogger("seerrperf.pool")

SyncConnection: TypeAlias = psycopg.Connection[TupleRow]
AsyncConnection: TypeAlias = psycopg.AsyncConnection[TupleRow]
SyncCallback: TypeAlias = Callable[[SyncConnection], None]
AsyncCallback: TypeAlias = Callable[[AsyncConnection], Awaitable[None]]

_APP_NAME_MAX = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names silently


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
        idle_in_transaction_timeout: Server ends sessions idle inside a
            transaction for longer than this; ``None`` disables it.
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
        application_name: Shown in ``pg_stat_activity``.
        pgbouncer: Apply the timeouts with ``SET`` after connecting instead of
            libpq startup ``options``, which PgBouncer rejects.
    """

    min_size: int = 2
    max_size: int = 20
    max_idle: float = 30.0
    timeout: float = 2.0
    connect_timeout: int = 2
    statement_timeout: float | None = 30.0
    idle_in_transaction_timeout: float | None = 60.0
    keepalives_idle: int = 10
    max_lifetime: float = 3600.0
    max_waiting: int = 0
    check: bool = True
    check_idle: float = 1.0
    application_name: str = "seerrperf"
    pgbouncer: bool = False

    def __post_init__(self) -> None:
        for name in ("min_size", "max_waiting"):
            _validate.count(name, getattr(self, name))
        _validate.count("max_size", self.max_size, minimum=1)
        _validate.whole_seconds("keepalives_idle", self.keepalives_idle, minimum=1)
        _validate.whole_seconds("connect_timeout", self.connect_timeout, minimum=2)
        if self.min_size > self.max_size:
            raise ConfigurationError(
                f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})"
            )
        for name in ("max_idle", "timeout", "max_lifetime"):
            _validate.duration(name, getattr(self, name), allow_zero=False)
        for name in ("statement_timeout", "idle_in_transaction_timeout"):
            value = getattr(self, name)
            if value is not None:
                _validate.duration(name, value, allow_zero=False)
        _validate.duration("check_idle", self.check_idle)
        for name in ("check", "pgbouncer"):
            _validate.flag(name, getattr(self, name))
        _validate.name("application_name", self.application_name, max_bytes=_APP_NAME_MAX)

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
            params["statement_timeout"] = _ms(self.statement_timeout)
        if self.idle_in_transaction_timeout is not None:
            params["idle_in_transaction_session_timeout"] = _ms(self.idle_in_transaction_timeout)
        return params


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(PoolSettings))
_DEFAULTS = PoolSettings()


class _IdleTracker:
    """Decides which checkouts need a liveness check, for ``check_idle``.

    It remembers when each connection was last checked out (or connected).
    That time is never later than when the connection went back to the pool,
    so "checked out less than ``check_idle`` ago" safely implies "idle for
    less than ``check_idle``". Tracking returns instead would need a pool
    ``reset`` callback, which makes psycopg_pool return every connection
    through a worker thread.
    """

    __slots__ = ("_check_idle", "_clock", "_since")

    def __init__(self, check_idle: float, clock: Clock) -> None:
        self._check_idle = check_idle
        self._clock = clock
        self._since: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()

    def mark(self, conn: object) -> None:
        self._since[conn] = self._clock()

    def due(self, conn: object) -> bool:
        """Record a checkout of ``conn``; return whether it must be verified."""
        now = self._clock()
        since = self._since.get(conn)
        self._since[conn] = now
        return since is None or now - since >= self._check_idle


@dataclass(frozen=True, slots=True)
class _PoolPlan:
    """Everything a pool needs that can be computed without I/O."""

    conninfo: str
    kwargs: dict[str, Any]
    settings: PoolSettings
    set_statement: str | None  # run after connect when behind PgBouncer
    tracker: _IdleTracker | None
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
        set_statement = None
        if final.pgbouncer and final.session_parameters():
            set_statement = "; ".join(
                f"SET {name} = {value}" for name, value in final.session_parameters().items()
            )
        tracker = (
            _IdleTracker(final.check_idle, clock) if final.check and final.check_idle > 0 else None
        )
        return cls(
            conninfo=conninfo,
            kwargs=libpq,
            settings=final,
            set_statement=set_statement,
            tracker=tracker,
            secrets=dsn_secrets(conninfo),
        )

    def pool_arguments(self, name: str | None) -> dict[str, Any]:
        s = self.settings
        return {
            "conninfo": self.conninfo,
            "kwargs": self.kwargs,
            "min_size": s.min_size,
            "max_size": s.max_size,
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
    params.update(user)
    return params


def _log_reconnect_failed(plan: _PoolPlan, pool_name: str) -> None:
    logger.error(plan.reconnect_failed_message(pool_name))


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
) -> ConnectionPool[SyncConnection]:
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
            ``check_idle`` (tests pass a :class:`~seerrperf.testing.FakeClock`).
        **overrides: :class:`PoolSettings` fields, e.g. ``max_size=5``.

    Returns:
        The pool, not yet opened.

    Raises:
        ConfigurationError: no DSN, an unparsable DSN, an unknown override or an
            invalid value (a callback or ``clock`` that cannot be called
            included). The message never contains the password.
    """
    plan = _PoolPlan.build(dsn, settings, kwargs, overrides, name, clock, configure, reset)
    tracker = plan.tracker

    def _configure(conn: SyncConnection) -> None:
        if plan.set_statement:
            conn.execute(plan.set_statement)
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

    return ConnectionPool(
        **plan.pool_arguments(name),
        configure=_configure,
        reset=reset,
        check=_check if plan.settings.check else None,
        reconnect_failed=_reconnect_failed,
    )


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
) -> AsyncConnectionPool[AsyncConnection]:
    """Create an unopened ``psycopg_pool.AsyncConnectionPool`` with tuned defaults.

    The async twin of :func:`pool_factory`, with the same arguments (callbacks
    are coroutine functions)::

        async with async_pool_factory() as pool:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")

    Raises:
        ConfigurationError: as :func:`pool_factory`.
    """
    plan = _PoolPlan.build(dsn, settings, kwargs, overrides, name, clock, configure, reset)
    tracker = plan.tracker

    async def _configure(conn: AsyncConnection) -> None:
        if plan.set_statement:
            await conn.execute(plan.set_statement)
            await conn.commit()
        if configure is not None:
            await configure(conn)
        if tracker is not None:
            tracker.mark(conn)

    async def _check(conn: AsyncConnection) -> None:
        if tracker is None or tracker.due(conn):
            with guard_check(conn):
                await AsyncConnectionPool.check_connection(conn)

    async def _reconnect_failed(pool: AsyncConnectionPool[Any]) -> None:
        _log_reconnect_failed(plan, pool.name)

    return AsyncConnectionPool(
        **plan.pool_arguments(name),
        configure=_configure,
        reset=reset,
        check=_check if plan.settings.check else None,
        reconnect_failed=_reconnect_failed,
    )
