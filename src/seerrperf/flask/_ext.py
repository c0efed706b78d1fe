"""The :class:`Seerrperf` extension: configuration, per-process objects, teardown, health, CLI."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import click
import httpx
import psycopg
from flask import Blueprint, Flask, Response, current_app, g
from flask.cli import AppGroup
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from seerrperf import (
    CacheManager,
    ConfigurationError,
    HealthResult,
    KeyedLock,
    PgAdvisoryLock,
    SeerrperfError,
    TmdbClient,
    _validate,
    check_database_health,
    collect_stats,
    health_report,
    no_store_headers,
    pool_factory,
)
from seerrperf._cache.manager import SEERR_TTLS
from seerrperf._pg import SyncConnection
from seerrperf._web import IntegrationConfig
from seerrperf._web.process import PerProcess

from ._config import FlaskConfig
from ._guard import WsgiGuard
from ._handlers import add_error_handlers

if TYPE_CHECKING:
    from seerrperf._redis.backend import RedisBackend

__all__ = ["EXTENSION_KEY", "Lock", "Seerrperf"]

EXTENSION_KEY: Final = "seerrperf"
"""The key of ``app.extensions`` that holds the app's :class:`Seerrperf`."""

Lock: TypeAlias = PgAdvisoryLock | KeyedLock
"""What :attr:`Seerrperf.lock` is: ``with lock(key, timeout=...) as held:`` for both
(``held`` is the transaction's connection for the advisory lock, ``None`` for the local one)."""

logger = logging.getLogger("seerrperf.flask")

_HEALTH_JSON: Final = "application/health+json"
_LIVE_BODY: Final = b'{"status":"pass"}'
_G_CONNECTION: Final = "_seerrperf_connection"
# The database check keeps its own deadline; this only cuts off a custom one.
_HEALTH_MARGIN: Final = 0.25


@dataclass(frozen=True, slots=True)
class _Objects:
    """What one process made for one app; made on first use, closed at exit."""

    pool: ConnectionPool[SyncConnection]
    tmdb: TmdbClient | None
    lock: Lock
    redis: RedisBackend | None = None
    caches: CacheManager | None = None  # caches this process put on ``redis``

    def close(self) -> None:
        try:
            if self.tmdb is not None:
                self.tmdb.close()
        finally:
            try:
                self.pool.close()
            finally:
                if self.caches is not None:
                    self.caches.close()
                if self.redis is not None:
                    self.redis.close()


class _AppState:
    """One app's checked configuration and this process's objects for it."""

    def __init__(self, config: FlaskConfig, make: Callable[[FlaskConfig], _Objects]) -> None:
        self.config = config
        self.objects: PerProcess[_Objects] = PerProcess(lambda: make(config))


class Seerrperf:
    """The Flask extension: ``Seerrperf(app)``, or ``sp = Seerrperf()`` then ``sp.init_app(app)``.

    :meth:`init_app` reads and checks the app's ``SEERRPERF_*`` config keys
    (see ``docs/flask.md``) and adds the error contract; it opens nothing.
    The pool, the TMDB client and the lock are made in each process the
    first time a view (or a CLI command, or your code in an app context)
    asks for one -- so after gunicorn forks its workers, also with
    ``--preload`` -- and closed when the process exits (or by
    :meth:`close`). The caches (a :class:`~seerrperf.CacheManager`) exist
    from construction, so ``@cached(sp.caches.get_cache(...))`` works at
    import time.

    One extension object may serve several apps (an app factory called by
    every test): the accessors answer for ``flask.current_app``, which is
    also found as ``current_app.extensions["seerrperf"]``.

    Args:
        app: The app to initialise now; omit it to call :meth:`init_app` later.
        caches: The :class:`~seerrperf.CacheManager` to use; a new one by
            default. The TMDB client caches in its ``tmdb`` cache;
            ``SEERRPERF_CACHE_PRESET = "seerr"`` adds Seerr's ten caches to it.

    Raises:
        ConfigurationError: as :meth:`init_app`, or ``caches`` is not a
            ``CacheManager``.
    """

    def __init__(self, app: Flask | None = None, *, caches: CacheManager | None = None) -> None:
        self._caches = (
            CacheManager()
            if caches is None
            else _validate.instance("caches", caches, CacheManager, "a CacheManager")
        )
        self._states: weakref.WeakKeyDictionary[Flask, _AppState] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Seerrperf apps={len(self._states)} caches={self._caches.names()}>"

    # -- wiring it into an app ---------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read ``app``'s ``SEERRPERF_*`` config and add seerrperf to it; opens nothing.

        - Checks every ``SEERRPERF_*`` key (unknown keys are refused), the DSN
          and the TMDB client's options, so a mistake fails here rather than
          in the first request.
        - Sets ``MAX_CONTENT_LENGTH`` to the body limit when the app sets none.
        - Error handlers: outages answer 503 ``application/problem+json`` with
          ``Retry-After`` and ``no-store``; a body werkzeug finds too large
          413; any other failure a 500 that says nothing of the cause.
        - Wraps ``app.wsgi_app`` in a guard: every error response
          ``no-store``; a declared body over the limit refused (413) before
          the app runs; redirects to the request's own host made relative.
        - Returns this request's :meth:`connection` to the pool at teardown.
        - Adds ``flask seerrperf health`` and ``flask seerrperf stats``.

        Args:
            app: A Flask app that has not served a request yet.

        Raises:
            ConfigurationError: a ``SEERRPERF_*`` key is unknown or has a bad
                value, or the DSN cannot be used (credentials are never shown).
            SeerrperfError: ``app`` was initialised already.
        """
        if EXTENSION_KEY in app.extensions:
            raise SeerrperfError("this app has a Seerrperf already (init_app runs once per app)")
        config = FlaskConfig.from_config(app.config)
        shared = config.integration
        # Checks first, changes after. An unopened pool holds no socket and no thread.
        pool_factory(**shared.pool_arguments())
        if shared.has_tmdb:
            _check_tmdb_arguments(shared.tmdb_arguments(CacheManager()))
        if config.cache_preset == "seerr":
            for name, ttl in SEERR_TTLS.items():
                self._caches.get_cache(name, ttl=ttl)
        if shared.has_tmdb:
            shared.tmdb_cache(self._caches)  # a size clash with an existing cache shows now
        if app.config.get("MAX_CONTENT_LENGTH") is None and shared.max_body_size is not None:
            app.config["MAX_CONTENT_LENGTH"] = shared.max_body_size
        self._states[app] = _AppState(config, self._make)
        app.extensions[EXTENSION_KEY] = self
        add_error_handlers(app)
        app.wsgi_app = WsgiGuard(  # type: ignore[method-assign]
            app.wsgi_app,
            max_body_size=shared.max_body_size,
            relative_redirects=config.relative_redirects,
        )
        app.teardown_appcontext(_return_connection)
        app.cli.add_command(self._commands())

    # -- what it serves ----------------------------------------------------------------

    def _state(self) -> _AppState:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._states.get(app)
        if state is None:
            raise SeerrperfError(
                "this app has no Seerrperf: call Seerrperf(app) or sp.init_app(app)"
            )
        return state

    def _objects(self) -> _Objects:
        return self._state().objects()

    def _make(self, config: FlaskConfig) -> _Objects:
        shared = config.integration
        redis = shared.redis_backend()  # one per process, like the pool
        attached: CacheManager | None = None
        if redis is not None and self._caches.shared is None:
            self._caches._use_shared(redis)
            attached = self._caches
        pool = pool_factory(**shared.pool_arguments())
        pool.open(wait=False)  # the app serves while the database is down; readiness says so
        try:
            tmdb = TmdbClient(**shared.tmdb_arguments(self._caches)) if shared.has_tmdb else None
            lock: Lock = (
                PgAdvisoryLock(pool, namespace=shared.lock_namespace)
                if config.lock == "advisory"
                else KeyedLock()
            )
        except BaseException:
            pool.close()
            if attached is not None:
                attached.close()
            if redis is not None:
                redis.close()
            raise
        logger.debug("seerrperf made its objects in process %d", os.getpid())
        return _Objects(pool=pool, tmdb=tmdb, lock=lock, redis=redis, caches=attached)

    @property
    def config(self) -> IntegrationConfig:
        """The current app's checked settings (those every integration shares).

        Raises:
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context (Flask's "working outside of application context").
        """
        return self._state().config.integration

    @property
    def caches(self) -> CacheManager:
        """The caches; they exist from construction, for every app of this extension."""
        return self._caches

    @property
    def pool(self) -> ConnectionPool[SyncConnection]:
        """This process's open ``psycopg_pool.ConnectionPool`` for the current app.

        Made and opened on first use (without waiting for the database).

        Raises:
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context.
        """
        return self._objects().pool

    @property
    def tmdb(self) -> TmdbClient:
        """This process's :class:`~seerrperf.TmdbClient` (sync: cached, coalesced, rate-limited).

        Raises:
            SeerrperfError: no TMDB credential is configured, or the current
                app was not initialised.
            RuntimeError: no app context.
        """
        tmdb = self._objects().tmdb
        if tmdb is None:
            raise SeerrperfError(
                "no TMDB client: set SEERRPERF_TMDB_ACCESS_TOKEN (or SEERRPERF_TMDB_API_KEY)"
            )
        return tmdb

    @property
    def lock(self) -> Lock:
        """This process's per-key lock, as ``SEERRPERF_LOCK`` says.

        ``"advisory"`` (the default): a :class:`~seerrperf.PgAdvisoryLock` on
        the pool, which holds across worker processes and hosts and yields the
        transaction's connection; ``"local"``: a :class:`~seerrperf.KeyedLock`
        for the threads of this process, which yields ``None``.

        Raises:
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context.
        """
        return self._objects().lock

    def connection(self) -> psycopg.Connection[Any]:
        """A pooled connection for the rest of this app context (the request).

        The first call checks one out (waiting at most the pool's
        ``timeout``); later calls in the same request return the same one.
        At teardown it goes back to the pool, and a transaction left open is
        rolled back: commit yourself (``conn.commit()``, or ``with
        conn.transaction():``), so nothing is half-written when a request fails.

        Raises:
            psycopg_pool.PoolTimeout: no connection in time (an outage: 503).
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context.
        """
        held: tuple[ConnectionPool[SyncConnection], SyncConnection] | None = g.get(_G_CONNECTION)
        if held is not None:
            return held[1]
        pool = self.pool
        conn = pool.getconn()
        setattr(g, _G_CONNECTION, (pool, conn))
        return conn

    def check_health(self) -> HealthResult:
        """Ask the database whether it answers, within ``SEERRPERF_HEALTH_TIMEOUT``.

        Returns:
            The :class:`~seerrperf.HealthResult`; never raises for a database problem.

        Raises:
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context.
        """
        timeout = self.config.health_timeout
        return check_database_health(self.pool, timeout=timeout)

    def stats(self) -> dict[str, Any]:
        """Return :func:`~seerrperf.collect_stats` of the caches and of what this
        process made for the current app (pool, TMDB client, ``lock``); it makes nothing.

        Raises:
            SeerrperfError: the current app was not initialised.
            RuntimeError: no app context.
        """
        objects = self._state().objects.peek()
        if objects is None:
            return collect_stats(caches=self._caches)
        return collect_stats(
            pool=objects.pool,
            caches=self._caches,
            tmdb=objects.tmdb,
            locks={"lock": objects.lock},
            redis=objects.redis,
        )

    def close(self, app: Flask | None = None) -> None:
        """Close what this process made for ``app`` (every app of this extension when ``None``).

        The next use makes new objects. Processes close theirs at exit by
        themselves; call this where exit hooks do not run, or to start
        afresh (tests). Idempotent.
        """
        states = list(self._states.values()) if app is None else [self._states[app]]
        for state in states:
            state.objects.close()

    # -- health and commands -----------------------------------------------------------

    def health_blueprint(
        self,
        *,
        live_path: str = "/health/live",
        ready_path: str = "/health/ready",
        version: str | None = None,
        check: Callable[[], HealthResult] | None = None,
        name: str = "seerrperf_health",
    ) -> Blueprint:
        """Return a blueprint with liveness and readiness views (``application/health+json``).

        - Liveness: always 200 ``{"status":"pass"}``; it never touches the
          database, so an outage does not make an orchestrator restart every
          instance.
        - Readiness: :meth:`check_health` as :func:`~seerrperf.health_report`:
          200 or 503, ``no-store``, within ``SEERRPERF_HEALTH_TIMEOUT`` plus a
          small margin, also when the database accepts connections and never
          answers.

        Args:
            live_path: Path of the liveness view (endpoint ``<name>.live``).
            ready_path: Path of the readiness view (endpoint ``<name>.ready``).
            version: The ``version`` field of readiness reports.
            check: Readiness runs this instead of :meth:`check_health` (to add
                checks of your own); it runs on a thread of its own and is cut
                off after the health timeout plus 0.25 s, counting as failed
                then (one such check runs at a time: a probe arriving while a
                stuck one runs fails at once).
            name: The blueprint's name.
        """
        blueprint = Blueprint(name, __name__)
        probe = self.check_health if check is None else _bounded(check, self)

        def live() -> Response:
            return Response(_LIVE_BODY, 200, headers=no_store_headers(), content_type=_HEALTH_JSON)

        def ready() -> Response:
            report = health_report(*self._readiness(probe), version=version)
            return Response(report.json(), report.status_code, headers=dict(report.headers))

        blueprint.add_url_rule(live_path, "live", live, methods=["GET"])
        blueprint.add_url_rule(ready_path, "ready", ready, methods=["GET"])
        return blueprint

    def _readiness(self, probe: Callable[[], HealthResult]) -> list[HealthResult]:
        """``probe()``, and this process's Redis check (non-critical) when it has a backend."""
        results = [probe()]
        objects = self._state().objects.peek()
        if objects is not None and objects.redis is not None:
            from seerrperf._redis.health import check_redis_health

            results.append(check_redis_health(objects.redis))
        return results

    def _commands(self) -> click.Group:
        group = AppGroup("seerrperf", help="seerrperf's health check and figures for this app.")

        @group.command("health")
        def health() -> None:
            """Print the readiness report (health+json); exit 0 if it passes, else 1."""
            report = health_report(*self._readiness(self.check_health))
            click.echo(report.json())
            if report.status_code != 200:
                raise SystemExit(1)

        @group.command("stats")
        def stats() -> None:
            """Print collect_stats of the caches, pool, TMDB client and lock as JSON."""
            self.pool  # noqa: B018 - make this process's objects, so there is something to show
            click.echo(json.dumps(self.stats(), sort_keys=True, default=str))

        return group


def _check_tmdb_arguments(arguments: dict[str, Any]) -> None:
    """Let the TMDB client check its arguments now; its HTTP client is never made."""
    unused = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(503)))
    try:
        with unused, TmdbClient(**arguments, http_client=unused):
            pass
    except ConfigurationError as exc:
        raise ConfigurationError(f"SEERRPERF_TMDB_*: {exc}") from None


def _return_connection(exc: BaseException | None) -> None:
    """Teardown: give this app context's connection back, rolling back what is open."""
    held: tuple[ConnectionPool[SyncConnection], SyncConnection] | None = g.pop(_G_CONNECTION, None)
    if held is None:
        return
    pool, conn = held
    try:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
    except psycopg.Error:
        pass  # a broken connection: the pool discards it
    try:
        pool.putconn(conn)
    except Exception:  # teardown must not raise
        logger.exception("seerrperf could not return a connection to its pool")


def _bounded(check: Callable[[], HealthResult], ext: Seerrperf) -> Callable[[], HealthResult]:
    """Run ``check`` on a daemon thread, given up after the health timeout plus a margin."""
    running = threading.Lock()  # held while a check runs: a stuck check blocks no thread

    def failed(start: float, reason: str) -> HealthResult:
        latency = (time.monotonic() - start) * 1000.0
        return HealthResult(healthy=False, status="fail", latency_ms=latency, error=reason)

    def probe() -> HealthResult:
        timeout = ext.config.health_timeout
        start = time.monotonic()
        if not running.acquire(blocking=False):
            return failed(start, "the previous readiness check has not finished")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        done = threading.Event()
        outcome: list[HealthResult] = []

        def run() -> None:
            try:
                with app.app_context():
                    outcome.append(check())
            except Exception as exc:
                outcome.append(failed(start, f"the check raised {type(exc).__name__}"))
            finally:
                running.release()
                done.set()

        threading.Thread(target=run, name="seerrperf-readiness", daemon=True).start()
        if done.wait(timeout + _HEALTH_MARGIN) and outcome:
            return outcome[0]
        return failed(start, f"no answer within {timeout:g} s")

    return probe
