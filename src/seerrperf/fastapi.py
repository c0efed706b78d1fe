"""FastAPI (and Starlette) integration: one object wires seerrperf into an app.

::

    from fastapi import FastAPI
    from seerrperf.fastapi import Pool, Seerrperf, Tmdb

    sp = Seerrperf.from_env()  # DATABASE_URL, TMDB_API_TOKEN
    app = FastAPI(lifespan=sp.lifespan)
    sp.install(app)  # outage 503s, no-store errors, body limit, safe redirects
    app.include_router(sp.health_router())  # /health/live, /health/ready

    @app.get("/movie/{movie_id}")
    async def movie(movie_id: int, tmdb: Tmdb) -> dict[str, object]:
        return await tmdb.get_movie(movie_id)

:class:`Seerrperf` checks its configuration when it is made and builds
nothing: the pool, the TMDB client and the locks are made in the app's
lifespan, i.e. in each worker process after any fork, and closed when it
ends. The caches (a :class:`~seerrperf.CacheManager`) exist from the start,
so ``@cached(sp.caches.get_cache(...))`` works at import time; they are
emptied when the lifespan ends.

Needs FastAPI (``pip install "seerrperf[fastapi]"``); the rest of seerrperf
never imports this module. Everything here works on a plain Starlette app
too (with FastAPI installed), except the ``Depends`` providers and
:func:`json_body`, which are FastAPI's. The outage rules and the response
parts are framework-neutral and shared with the other integrations; see
``docs/outages.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

try:
    from fastapi import APIRouter, Depends
    from fastapi.exceptions import RequestValidationError
    from pydantic import TypeAdapter, ValidationError
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import JSONResponse, Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        'seerrperf.fastapi needs FastAPI: pip install "seerrperf[fastapi]"'
    ) from _missing

import psycopg
from psycopg_pool import AsyncConnectionPool

from seerrperf import _validate
from seerrperf._cache import CacheManager
from seerrperf._errors import (
    CacheLoadAbortedError,
    ConfigurationError,
    LockTimeout,
    SeerrperfError,
    TmdbError,
)
from seerrperf._headers import no_store_headers
from seerrperf._lock import AsyncLock
from seerrperf._pg import (
    AsyncConnection,
    HealthResult,
    PgAdvisoryLock,
    PoolSettings,
    async_check_database_health,
    async_pool_factory,
    health_report,
)
from seerrperf._stats import collect_stats
from seerrperf._tmdb import TmdbClient, TtlPolicy
from seerrperf._web import (
    BodyCounter,
    IntegrationConfig,
    Problem,
    classify_outage,
    declared_length,
    error_headers,
    outage_problem,
    relative_location,
    server_error_problem,
    too_large_problem,
)
from seerrperf._web.config import DEFAULT_MAX_BODY_SIZE
from seerrperf.starlette import json_response

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "AdvisoryLock",
    "Caches",
    "GuardMiddleware",
    "Lock",
    "Pool",
    "Seerrperf",
    "Tmdb",
    "add_exception_handlers",
    "json_body",
    "json_response",
]

logger = logging.getLogger("seerrperf.fastapi")

_T = TypeVar("_T")
_HEALTH_JSON: Final = "application/health+json"
_LIVE_BODY: Final = b'{"status":"pass"}'
_STATE: Final = "seerrperf"


# --- the object -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Running:
    """What one lifespan made; gone when it ends."""

    config: IntegrationConfig
    pool: AsyncConnectionPool[AsyncConnection]
    tmdb: TmdbClient | None
    lock: AsyncLock
    advisory_lock: PgAdvisoryLock


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
        tmdb_options: Further :class:`~seerrperf.TmdbClient` arguments:
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
        )
        self._caches = (
            CacheManager()
            if caches is None
            else _validate.instance("caches", caches, CacheManager, "a CacheManager")
        )
        self._running: _Running | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Seerrperf:
        """Make one from the environment; arguments given here win.

        Reads ``DATABASE_URL``, ``TMDB_API_TOKEN`` (v4 read access token),
        ``TMDB_API_KEY`` (v3 key) and ``TMDB_BASE_URL``; unset or empty
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
    def tmdb(self) -> TmdbClient:
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
    def advisory_lock(self) -> PgAdvisoryLock:
        """A per-key lock across processes and hosts, on the pool
        (:class:`~seerrperf.PgAdvisoryLock`, namespace ``lock_namespace``).

        Raises:
            SeerrperfError: the lifespan is not running.
        """
        return self._current().advisory_lock

    def stats(self) -> dict[str, Any]:
        """Return :func:`~seerrperf.collect_stats` of the caches and, when running,
        the pool, the TMDB client and both locks (``lock``, ``advisory_lock``)."""
        running = self._running
        if running is None:
            return collect_stats(caches=self._caches)
        return collect_stats(
            pool=running.pool,
            caches=self._caches,
            tmdb=running.tmdb,
            locks={"lock": running.lock, "advisory_lock": running.advisory_lock},
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
        if self._running is not None:
            raise SeerrperfError("this Seerrperf is already running (one lifespan at a time)")
        config = self._config.replace(**overrides) if overrides else self._config
        async with AsyncExitStack() as stack:
            pool = async_pool_factory(**config.pool_arguments())
            await stack.enter_async_context(pool)
            tmdb: TmdbClient | None = None
            if config.has_tmdb:
                tmdb = await stack.enter_async_context(
                    TmdbClient(**config.tmdb_arguments(self._caches))
                )
            self._running = _Running(
                config=config,
                pool=pool,
                tmdb=tmdb,
                lock=AsyncLock(),
                advisory_lock=PgAdvisoryLock(pool, namespace=config.lock_namespace),
            )
            setattr(app.state, _STATE, self)
            try:
                yield
            finally:
                self._running = None
                self._caches.clear_all()

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
        setattr(app.state, _STATE, self)

    def health_router(
        self,
        *,
        live_path: str = "/health/live",
        ready_path: str = "/health/ready",
        version: str | None = None,
        include_in_schema: bool = False,
    ) -> APIRouter:
        """Return a router with liveness and readiness routes (``application/health+json``).

        - Liveness: always 200 ``{"status":"pass"}``; it never touches the
          database, so an outage does not make an orchestrator restart
          every instance.
        - Readiness: :meth:`check_health` as :func:`~seerrperf.health_report`:
          200 or 503, ``no-store``, within ``health_timeout`` plus a small
          margin, also when the database accepts connections and never
          answers.

        Args:
            live_path: Path of the liveness route.
            ready_path: Path of the readiness route.
            version: The ``version`` field of readiness reports.
            include_in_schema: List the routes in the OpenAPI schema.
        """

        async def live() -> Response:
            return Response(_LIVE_BODY, media_type=_HEALTH_JSON, headers=no_store_headers())

        async def ready() -> Response:
            report = health_report(await self.check_health(), version=version)
            return Response(report.json(), report.status_code, headers=dict(report.headers))

        router = APIRouter()
        for path, endpoint, name in ((live_path, live, "live"), (ready_path, ready, "ready")):
            router.add_api_route(
                path,
                endpoint,
                methods=["GET"],
                name=f"seerrperf_{name}",
                include_in_schema=include_in_schema,
                response_class=Response,
            )
        return router


# --- Depends providers ----------------------------------------------------------------


def _seerrperf(connection: HTTPConnection) -> Seerrperf:
    found = getattr(connection.app.state, _STATE, None)
    if not isinstance(found, Seerrperf):
        raise SeerrperfError(
            "this app has no Seerrperf: call sp.install(app) or use lifespan=sp.lifespan"
        )
    return found


def _pool(connection: HTTPConnection) -> AsyncConnectionPool[AsyncConnection]:
    return _seerrperf(connection).pool


def _tmdb(connection: HTTPConnection) -> TmdbClient:
    return _seerrperf(connection).tmdb


def _caches(connection: HTTPConnection) -> CacheManager:
    return _seerrperf(connection).caches


def _lock(connection: HTTPConnection) -> AsyncLock:
    return _seerrperf(connection).lock


def _advisory_lock(connection: HTTPConnection) -> PgAdvisoryLock:
    return _seerrperf(connection).advisory_lock


Pool = Annotated[AsyncConnectionPool[AsyncConnection], Depends(_pool)]
"""The app's open ``psycopg_pool.AsyncConnectionPool``: ``async def route(pool: Pool)``."""

Tmdb = Annotated[TmdbClient, Depends(_tmdb)]
"""The app's :class:`~seerrperf.TmdbClient` (cached, coalesced, rate-limited)."""

Caches = Annotated[CacheManager, Depends(_caches)]
"""The app's :class:`~seerrperf.CacheManager`."""

Lock = Annotated[AsyncLock, Depends(_lock)]
"""The app's per-process :class:`~seerrperf.AsyncLock`."""

AdvisoryLock = Annotated[PgAdvisoryLock, Depends(_advisory_lock)]
"""The app's :class:`~seerrperf.PgAdvisoryLock` (holds across worker processes and hosts)."""


# --- request bodies -------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def json_body(model: type[_T]) -> Any:
    """A dependency that reads and validates a JSON body only when its turn comes.

    FastAPI reads a declared body (``body: Model``) before it runs any
    dependency, so an unauthenticated request has its body read before the
    401. With ``body: Annotated[Model, json_body(Model)]`` placed after the
    authentication dependency, the body is read only once the caller is
    known (and never beyond the :class:`GuardMiddleware` limit)::

        @app.post("/request")
        async def create(user: User, body: Annotated[NewRequest, json_body(NewRequest)]): ...

    Dependencies run in the order of the parameters (route and router
    ``dependencies=`` first). The body does not appear in the OpenAPI
    schema; add ``openapi_extra`` if you publish one.

    Args:
        model: Any type pydantic validates: a model, a ``TypedDict``, ``list[int]``.

    Returns:
        The ``Depends(...)`` marker to put in ``Annotated``.

    Raises:
        ConfigurationError: pydantic cannot validate ``model``.
    """
    try:
        adapter: TypeAdapter[_T] = TypeAdapter(model)
    except Exception as exc:
        raise ConfigurationError(
            f"json_body needs a type pydantic can validate: {type(exc).__name__}"
        ) from exc

    async def read_json_body(request: Request) -> _T:
        content_type = request.headers.get("content-type")
        if content_type is not None and not _is_json(content_type):
            raise HTTPException(415, "send the body as application/json")
        raw = await request.body()
        try:
            return adapter.validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in errors]
            ) from None

    return Depends(read_json_body)


# --- exception handlers ---------------------------------------------------------------

# Location elements that are names, not a peer's data (field names, headers).
_NAME_LOC = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def _public_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """A validation error as a client may see it: what and where, never the input."""
    loc: list[str | int] = []
    for part in error.get("loc", ()):
        if isinstance(part, int) and not isinstance(part, bool):
            loc.append(part)
        elif isinstance(part, str) and _NAME_LOC.fullmatch(part):
            loc.append(part)
        else:
            loc.append("*")
    if error.get("type") == "extra_forbidden" and len(loc) > 1:
        loc[-1] = "*"  # the unexpected key is the peer's, not ours
    return {"type": str(error.get("type", "")), "loc": loc, "msg": str(error.get("msg", ""))}


def _problem_response(problem: Problem, *, headers: Mapping[str, str] | None = None) -> Response:
    return Response(problem.body(), problem.status, headers={**problem.headers(), **(headers or {})})


async def _validation_failed(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = {"detail": [_public_error(error) for error in errors]}
    return JSONResponse(body, 422, headers=no_store_headers())


async def _body_too_large(request: Request, exc: Exception) -> Response:
    limit = exc.limit if isinstance(exc, _BodyTooLarge) else 0
    return _problem_response(too_large_problem(limit), headers={"Connection": "close"})


async def _maybe_outage(request: Request, exc: Exception) -> Response:
    outage = classify_outage(exc)
    if outage is None:
        raise exc  # not an outage: the last resort answers 500 (and it is logged)
    logger.warning(
        "%s answered 503: %s (%s)", request.method, outage.kind, type(exc).__name__
    )
    return _problem_response(outage_problem(outage))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _problem_response(server_error_problem())


_OUTAGE_TYPES: Final[tuple[type[Exception], ...]] = (
    psycopg.Error,
    TmdbError,
    LockTimeout,
    CacheLoadAbortedError,
    ExceptionGroup,
)


def add_exception_handlers(app: Starlette) -> None:
    """Give ``app`` the error contract (``Seerrperf.install`` calls this).

    - Outages (database, TMDB, lock; see ``docs/outages.md``) answer 503
      ``application/problem+json`` with ``Retry-After`` and ``no-store``,
      logged as one warning line without a traceback. Other database and
      TMDB errors go on to the 500 handler.
    - ``RequestValidationError`` answers 422 in FastAPI's shape
      (``{"detail": [{"type", "loc", "msg"}]}``) without ``input``,
      ``ctx`` or a peer's key names, ``no-store``.
    - A body over the limit answers 413 problem+json.
    - Any other exception answers 500 problem+json that says nothing of the
      cause, ``no-store``; the server still logs the traceback. (With
      ``debug=True`` Starlette shows its debug page instead.)
    """
    for kind in _OUTAGE_TYPES:
        app.add_exception_handler(kind, _maybe_outage)
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(_BodyTooLarge, _body_too_large)
    app.add_exception_handler(Exception, _server_error)


# --- the middleware -------------------------------------------------------------------


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes the limit as it arrives."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body must not be larger than {limit} bytes")
        self.limit = limit


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]
    return ", ".join(values) if values else None


class GuardMiddleware:
    """ASGI middleware: error responses ``no-store``, bounded bodies, relative redirects.

    - Every response with status 400 or above gets ``Cache-Control:
      no-store`` (and loses ``Expires``, ``ETag``, ``Last-Modified``),
      whoever built it.
    - A request whose ``Content-Length`` is over ``max_body_size`` is
      answered 413 (``Connection: close``) before a byte of its body is
      read; a body without a length (or with a false one) is counted as it
      arrives and refused at the first byte over (``receive()`` raises an
      ``HTTPException(413)``).
    - A redirect whose ``Location`` points at the request's own ``Host`` is
      sent as a relative reference (:func:`relative_location`).

    Args:
        app: The ASGI app.
        max_body_size: Largest body accepted, in bytes; ``None`` for no limit.
        relative_redirects: Rewrite same-origin ``Location`` headers.

    Raises:
        ConfigurationError: a bad argument.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        relative_redirects: bool = True,
    ) -> None:
        self.app = app
        self.max_body_size = (
            None if max_body_size is None else _validate.count("max_body_size", max_body_size)
        )
        self.relative_redirects = _validate.flag("relative_redirects", relative_redirects)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._guarded_send(scope, send)
        if self.max_body_size is not None:
            counter = BodyCounter(self.max_body_size)
            if counter.too_large(declared_length(_header(scope, b"content-length"))):
                await _send_problem(send, too_large_problem(counter.limit))
                return
            receive = _counted(receive, counter)
        await self.app(scope, receive, send)

    def _guarded_send(self, scope: Scope, send: Send) -> Send:
        host = _header(scope, b"host")
        scheme = str(scope.get("scheme", "http"))

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                redirect = self.relative_redirects and 300 <= status < 400
                if status >= 400 or redirect:
                    pairs = [
                        (key.decode("latin-1"), value.decode("latin-1"))
                        for key, value in message.get("headers", ())
                    ]
                    if status >= 400:
                        pairs = error_headers(pairs)
                    else:
                        pairs = [
                            (key, relative_location(value, scheme=scheme, host=host))
                            if key.lower() == "location"
                            else (key, value)
                            for key, value in pairs
                        ]
                    message = {
                        **message,
                        "headers": [
                            (key.encode("latin-1"), value.encode("latin-1"))
                            for key, value in pairs
                        ],
                    }
            await send(message)

        return guarded


def _counted(receive: Receive, counter: BodyCounter) -> Receive:
    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request" and counter.add(len(message.get("body", b""))):
            raise _BodyTooLarge(counter.limit)
        return message

    return counted


async def _send_problem(send: Send, problem: Problem) -> None:
    body = problem.body()
    headers = {**problem.headers(), "Content-Length": str(len(body)), "Connection": "close"}
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
