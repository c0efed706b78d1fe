"""``Depends`` providers for the objects of the app's :class:`Seerrperf`, and :func:`json_body`."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends
from fastapi.exceptions import RequestValidationError
from psycopg_pool import AsyncConnectionPool
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request

from seerrperf._cache import CacheManager
from seerrperf._errors import ConfigurationError, SeerrperfError
from seerrperf._locks import AsyncLock
from seerrperf._pg import AsyncConnection, AsyncPgAdvisoryLock
from seerrperf._tmdb import AsyncTmdbClient

from ._app import STATE_KEY, Seerrperf

__all__ = ["AdvisoryLock", "Caches", "Lock", "Pool", "Tmdb", "json_body"]

_T = TypeVar("_T")


def _seerrperf(connection: HTTPConnection) -> Seerrperf:
    found = getattr(connection.app.state, STATE_KEY, None)
    if not isinstance(found, Seerrperf):
        raise SeerrperfError(
            "this app has no Seerrperf: call sp.install(app) or use lifespan=sp.lifespan"
        )
    return found


def _pool(connection: HTTPConnection) -> AsyncConnectionPool[AsyncConnection]:
    return _seerrperf(connection).pool


def _tmdb(connection: HTTPConnection) -> AsyncTmdbClient:
    return _seerrperf(connection).tmdb


def _caches(connection: HTTPConnection) -> CacheManager:
    return _seerrperf(connection).caches


def _lock(connection: HTTPConnection) -> AsyncLock:
    return _seerrperf(connection).lock


def _advisory_lock(connection: HTTPConnection) -> AsyncPgAdvisoryLock:
    return _seerrperf(connection).advisory_lock


Pool = Annotated[AsyncConnectionPool[AsyncConnection], Depends(_pool)]
"""The app's open ``psycopg_pool.AsyncConnectionPool``: ``async def route(pool: Pool)``."""

Tmdb = Annotated[AsyncTmdbClient, Depends(_tmdb)]
"""The app's :class:`~seerrperf.AsyncTmdbClient` (cached, coalesced, rate-limited)."""

Caches = Annotated[CacheManager, Depends(_caches)]
"""The app's :class:`~seerrperf.CacheManager`."""

Lock = Annotated[AsyncLock, Depends(_lock)]
"""The app's per-process :class:`~seerrperf.AsyncLock`."""

AdvisoryLock = Annotated[AsyncPgAdvisoryLock, Depends(_advisory_lock)]
"""The app's :class:`~seerrperf.AsyncPgAdvisoryLock` (holds across worker processes and hosts)."""


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
