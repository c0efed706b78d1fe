"""The :class:`Seerrperf` object: configuration, lifespan, install, health routes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
from fastapi import APIRouter
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seerrperf import _validate
from seerrperf._cache import CacheManager
from seerrperf._errors import SeerrperfError
from seerrperf._headers import no_store_headers
from seerrperf._locks import AsyncLock
from seerrperf._pg import (
    AsyncConnection,
    AsyncPgAdvisoryLock,
    HealthResult,
    PoolSettings,
    async_check_database_health,
    async_pool_factory,
    health_report,
)
from seerrperf._stats import collect_stats
from seerrperf._tmdb import AsyncTmdbClient, TtlPolicy
from seerrperf._web import IntegrationConfig
from seerrperf._web.config import DEFAULT_MAX_BODY_SIZE

from ._handlers import add_exception_handlers
from ._middleware import GuardMiddleware

if TYPE_CHECKING:
    from seerrperf._redis.backend import RedisBackend

__all__ = ["STATE_KEY", "Seerrperf"]

STATE_KEY: Final = "seerrperf"
"""The attribute of ``app.state`` that holds the app's :class:`Seerrperf`."""

_HEALTH_JSON: Final = "application/health+json"
_LIVE_BODY: Final = b'{"status":"pass"}'
# The database check keeps its own deadline; this only cuts off a custom one.
_HEALTH_MARGIN: Final = 0.25


@dataclass(frozen=True, slots=True)
class _Running:
    """What one lifespan made; gone when it ends."""

    config: IntegrationConfig
    pool: AsyncConnectionPool[AsyncConnection]
    tmdb: AsyncTmdbClient | None
    lock: AsyncLock
    advisory_lock: AsyncPgAdvisoryLock
    redis: RedisBackend | None = None


class Seerrperf:
    """Opens seerrperf's objects in a FastAPI or Starlette app's lifespan and serves them.

    Made once per app, at import time; nothing is connected until the app
    starts. Pass :meth:`lifespan` as the app's ``lifespan=`` (or enter it
    from your own), call :meth:`install` for the error contract and the
    request limits, and include :meth:`health_router`.

    Args:
        database_url: libpq DSN or URI; ``None`` uses ``$DATABASE_URL``
            when the app starts.
        pool: :class:`~seerrperf.PoolSettings` for the pool (sizes, timeouts,
            ``application_name``, ``pgbouncer``).
        pool_kwargs: Extra ``psycopg.connect`` parameters, e.g.
            ``{"autocommit": True}``.
        pool_name: The pool's name in logs and statistics.
        tmdb_api_key: A TMDB v3 API key.
        tmdb_access_token: A TMDB v4 read access token (preferred). With
            neither there is no TMDB client, and :data:`Tmdb` fails.
        tmdb_base_url: The TMDB API root; TMDB's own by default.
        ttl_policy: TTLs per TMDB endpoint; default
            :meth:`TtlPolicy.by_volatility() <seerrperf.TtlPolicy.by_volatility>`.
        tmdb_cache_size: Entries of the ``tmdb`` cache if this creates it
            (10,000 by default).
        tmdb_options: Further :class:`~seerrperf.AsyncTmdbClient` arguments:
            ``timeout``, ``max_retries``, ``max_rps``, ``max_retry_after``,
            ``language``, ``region``; checked by the client when the app starts.
        caches: The :class:`~seerrperf.CacheManager` to use (e.g.
            ``CacheManager.seerr()``); a new, empty one by default. The TMDB
            client caches in its ``tmdb`` cache.
        lock_namespace: Mixed into every advisory lock id.
        health_timeout: Seconds readiness may take in all; it answers 503
            within this plus a small margin even when the database is frozen.
        max_body_size: Largest request body :meth:`install` lets through, in
            bytes (1 MiB); ``None`` for no limit.
        redis_url: A Redis or Valkey URL (``$REDIS_URL`` with
            :meth:`from_env`). Each lifespan (each worker process) then makes
            one :class:`~seerrperf.RedisBackend` (namespace
            ``lock_namespace``): the caches gain the shared tier, the TMDB
            client's ``max_rps`` becomes the fleet's, readiness reports Redis
            (non-critical: ``warn`` with 200 when only Redis is down).

    Raises:
        ConfigurationError: an argument is invalid (credentials are never
            shown in the message).
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        pool: PoolSettings | None = None,
        pool_kwargs: Mapping[str, Any] | None = None,
        pool_name: str | None = None,
        tmdb_api_key: str | None = None,
        tmdb_access_token: str | None = None,
        tmdb_base_url: str | None = None,
        ttl_policy: TtlPolicy | None = None,
        tmdb_cache_size: int | None = None,
        tmdb_options: Mapping[str, Any] | None = None,
        caches: CacheManager | None = None,
        lock_namespace: str = "seerrperf",
        health_timeout: float = 2.0,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        redis_url: str | None = None,
    ) -> None:
        self._config = IntegrationConfig(
            database_url=database_url,
            pool=PoolSettings() if pool is None else pool,
            pool_kwargs={} if pool_kwargs is None else pool_kwargs,
            pool_name=pool_name,
            tmdb_api_key=tmdb_api_key,
            tmdb_access_token=tmdb_access_token,
            tmdb_base_url=tmdb_base_url,
            ttl_policy=ttl_policy,
            tmdb_cache_size=tmdb_cache_size,
            tmdb_options={} if tmdb_options is None else tmdb_options,
            lock_namespace=lock_namespace,
            health_timeout=health_timeout,
            max_body_size=max_body_size,
            redis_url=redis_url,
        )
        self._caches = (
            CacheManager()
            if caches is None
            else _validate.instance("caches", caches, CacheManager, "a CacheManager")
        )
        self._running: _Running | None = None
        self._entered = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Seerrperf:
        """Make one from the environment; arguments given here win.

        Reads ``DATABASE_URL``, ``TMDB_API_TOKEN`` (v4 read access token),
        ``TMDB_API_KEY`` (v3 key), ``TMDB_BASE_URL`` and ``REDIS_URL``; unset or empty
        variables are skipped. A credential given in ``kwargs`` replaces
        both credential variables.

        Args:
            environ: The variables; ``os.environ`` when ``None``.
            **kwargs: Any argument of :class:`Seerrperf`.

        Raises:
            ConfigurationError: as the constructor.
        """
        caches = kwargs.pop("caches", None)
        config = IntegrationConfig.from_env(environ, **kwargs)
        settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        return cls(caches=caches, **settings)

    def __repr__(self) -> str:
        state = "running" if self._running is not None else "stopped"
        tmdb = "tmdb" if self._config.has_tmdb else "no tmdb"
        return f"<Seerrperf {state}, {tmdb}, caches={self._caches.names()}>"

    # -- what it serves ----------------------------------------------------------------

    @property
    def config(self) -> IntegrationConfig:
        """The settings in force: those of the running lifespan, else the constructor's."""
        return self._running.config if self._running is not None else self._config

    @property
    def running(self) -> bool:
        """Whether a lifespan is open (the pool, TMDB client and locks exist)."""
        return self._running is not None

    @property
    def caches(self) -> CacheManager:
        """The caches; they exist from construction, also when not running."""
        return self._caches

    def _current(self) -> _Running:
        if self._running is None:
            raise SeerrperfError(
                "seerrperf is not running: pass lifespan=sp.lifespan to the app "
                "(or enter `async with sp.lifespan(app):` in your own lifespan)"
            )
        return self._running

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection]:
        """The open pool.

        Raises:
            SeerrperfError: the app's lifespan is not running.
        """
        return self._current().pool

    @property
    def tmdb(self) -> AsyncTmdbClient:
        """The TMDB client.

        Raises:
            SeerrperfError: the lifespan is not running, or no TMDB credential is set.
        """
        tmdb = self._current().tmdb
        if tmdb is None:
            raise SeerrperfError(
                "no TMDB client: give tmdb_access_token (TMDB_API_TOKEN) or tmdb_api_key"
            )
        return tmdb

    @property
    def lock(self) -> AsyncLock:
        """A per-key lock for this process (:class:`~seerrperf.AsyncLock`).

        Raises:
            SeerrperfError: the lifespan is not running.
        """
        return self._current().lock

    @property
    def advisory_lock(self) -> AsyncPgAdvisoryLock:
        """A per-key lock across processes and hosts, on the pool
        (:class:`~seerrperf.AsyncPgAdvisoryLock`, namespace ``lock_namespace``).

        Raises:
            SeerrperfError: the lifespan is not running.
        """
        return self._current().advisory_lock

    @property
    def redis(self) -> RedisBackend | None:
        """This process's Redis backend while running with ``redis_url``, else ``None``."""
        running = self._running
        return None if running is None else running.redis

    def stats(self) -> dict[str, Any]:
        """Return :func:`~seerrperf.collect_stats` of the caches and, when running,
        the pool, the TMDB client, both locks (``lock``, ``advisory_lock``) and
        the Redis backend (with ``redis_url``)."""
        running = self._running
        if running is None:
            return collect_stats(caches=self._caches)
        return collect_stats(
            pool=running.pool,
            caches=self._caches,
            tmdb=running.tmdb,
            locks={"lock": running.lock, "advisory_lock": running.advisory_lock},
            redis=running.redis,
        )

    async def check_health(self) -> HealthResult:
        """Ask the database whether it answers, within ``health_timeout``.

        Returns:
            The :class:`~seerrperf.HealthResult`; a failed one when the
            lifespan is not running. Never raises for a database problem.
        """
        running = self._running
        if running is None:
            return HealthResult(
                healthy=False, status="fail", latency_ms=0.0, error="seerrperf is not running"
            )
        return await async_check_database_health(
            running.pool, timeout=running.config.health_timeout
        )

    async def _bounded(self, probe: Callable[[], Awaitable[HealthResult]]) -> HealthResult:
        """Run a readiness probe, cut off after the health timeout plus a margin."""
        timeout = self.config.health_timeout
        start = time.monotonic()
        with anyio.move_on_after(timeout + _HEALTH_MARGIN):
            return await probe()
        return HealthResult(
            healthy=False,
            status="fail",
            latency_ms=(time.monotonic() - start) * 1000.0,
            error=f"no answer within {timeout:g} s",
        )

    # -- the lifespan ------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Starlette, **overrides: Any) -> AsyncIterator[None]:
        """Open the pool, the TMDB client and the locks for the block; close them after.

        Use it as the app's lifespan (``FastAPI(lifespan=sp.lifespan)``) or
        from your own::

            @asynccontextmanager
            async def lifespan(app: FastAPI) -> AsyncIterator[None]:
                async with sp.lifespan(app):
                    await create_schema(sp.pool)
                    yield

        The pool opens without waiting for the database, so the app starts
        while it is down and readiness says 503 until it is back.

        Args:
            app: The app; it gets ``app.state.seerrperf`` for the providers.
            **overrides: Settings (names as in the constructor, not
                ``caches``) known only at start-up, e.g. the DSN of a test
                server; for this run only.

        Raises:
            ConfigurationError: an override is invalid, or the TMDB client
                refuses an argument.
            SeerrperfError: a lifespan of this object is already running.
        """
        if self._entered:
            raise SeerrperfError("this Seerrperf is already running (one lifespan at a time)")
        config = self._config.replace(**overrides) if overrides else self._config
        self._entered = True  # before the first await: a second start cannot slip in
        try:
            async with self._open(app, config):
                yield
        finally:
            self._entered = False

    @asynccontextmanager
    async def _open(self, app: Starlette, config: IntegrationConfig) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = config.redis_backend()  # one per lifespan: one per worker process
            if redis is not None:
                stack.push_async_callback(redis.aclose)
                if self._caches.shared is None:
                    self._caches._use_shared(redis)
                    stack.callback(self._caches.close)
            pool = async_pool_factory(**config.pool_arguments())
            await stack.enter_async_context(pool)
            tmdb: AsyncTmdbClient | None = None
            if config.has_tmdb:
                tmdb = await stack.enter_async_context(
                    AsyncTmdbClient(**config.tmdb_arguments(self._caches))
                )
            self._running = _Running(
                config=config,
                pool=pool,
                tmdb=tmdb,
                lock=AsyncLock(),
                advisory_lock=AsyncPgAdvisoryLock(pool, namespace=config.lock_namespace),
                redis=redis,
            )
            setattr(app.state, STATE_KEY, self)
            try:
                yield
            finally:
                self._running = None
                self._caches.clear_local()  # never the fleet's shared tier

    # -- wiring it into an app ---------------------------------------------------------

    def install(self, app: Starlette, *, relative_redirects: bool = True) -> None:
        """Add the error contract and the request limits to ``app``; call it before it starts.

        - :func:`add_exception_handlers`: outages answer 503 problem+json
          with ``Retry-After``; 422s do not echo the input; anything else
          is a 500 that says nothing of the cause.
        - :class:`GuardMiddleware`: every error response ``no-store``;
          bodies over ``max_body_size`` refused with 413 (unread when
          ``Content-Length`` says so); redirects to the request's own
          ``Host`` sent as relative references.
        - ``app.state.seerrperf``, so the providers find this object.

        Args:
            app: A FastAPI or Starlette app that has not started.
            relative_redirects: Rewrite ``Location`` headers that point at
                the request's own host into relative references.
        """
        add_exception_handlers(app)
        app.add_middleware(
            GuardMiddleware,
            max_body_size=self._config.max_body_size,
            relative_redirects=relative_redirects,
        )
        setattr(app.state, STATE_KEY, self)

    def health_router(
        self,
        *,
        live_path: str = "/health/live",
        ready_path: str = "/health/ready",
        version: str | None = None,
        include_in_schema: bool = False,
        check: Callable[[], Awaitable[HealthResult]] | None = None,
    ) -> APIRouter:
        """Return a router with liveness and readiness routes (``application/health+json``).

        - Liveness: always 200 ``{"status":"pass"}``; it never touches the
          database, so an outage does not make an orchestrator restart
          every instance.
        - Readiness: :meth:`check_health` as :func:`~seerrperf.health_report`:
          200 or 503, ``no-store``, within ``health_timeout`` plus a small
          margin, also when the database accepts connections and never
          answers. With ``redis_url``, :func:`~seerrperf.async_check_redis_health`
          too, as a non-critical component (``warn``, 200, when only Redis fails).

        Args:
            live_path: Path of the liveness route.
            ready_path: Path of the readiness route.
            version: The ``version`` field of readiness reports.
            include_in_schema: List the routes in the OpenAPI schema.
            check: Readiness runs this instead of :meth:`check_health`
                (e.g. to add checks of your own); it is cut off after
                ``health_timeout`` plus 0.25 s all the same, and counts as
                failed then.
        """
        probe = self.check_health if check is None else check

        async def live(request: Request) -> Response:
            return Response(_LIVE_BODY, media_type=_HEALTH_JSON, headers=no_store_headers())

        async def ready(request: Request) -> Response:
            results = [await self._bounded(probe)]
            redis = self.redis
            if redis is not None:
                from seerrperf._redis.health import async_check_redis_health

                results.append(await async_check_redis_health(redis))
            report = health_report(*results, version=version)
            return Response(report.json(), report.status_code, headers=dict(report.headers))

        # Plain Starlette routes: they also work mounted in a Starlette app.
        routes: list[BaseRoute] = [
            Route(path, endpoint, methods=["GET"], name=f"seerrperf_{name}",
                  include_in_schema=include_in_schema)
            for path, endpoint, name in ((live_path, live, "live"), (ready_path, ready, "ready"))
        ]  # fmt: skip
        return APIRouter(routes=routes)
