"""Exception handlers: the outage contract, inputs never echoed, a 500 that says nothing."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final

import psycopg
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from seerrperf._errors import CacheLoadAbortedError, LockTimeout, TmdbError
from seerrperf._headers import no_store_headers
from seerrperf._web import (
    Problem,
    classify_outage,
    outage_problem,
    server_error_problem,
    too_large_problem,
)

from ._middleware import BodyTooLarge

__all__ = ["add_exception_handlers", "problem_response"]

logger = logging.getLogger("seerrperf.fastapi")


# Location elements that are names, not a peer's data (field names, headers).
_NAME_LOC = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def _public_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """A validation error as a client may see it: what and where, never the input."""
    loc: list[str | int] = []
    for part in error.get("loc", ()):
        index = isinstance(part, int) and not isinstance(part, bool)
        name = isinstance(part, str) and _NAME_LOC.fullmatch(part) is not None
        loc.append(part if index or name else "*")
    if error.get("type") == "extra_forbidden" and len(loc) > 1:
        loc[-1] = "*"  # the unexpected key is the peer's, not ours
    return {"type": str(error.get("type", "")), "loc": loc, "msg": str(error.get("msg", ""))}


def problem_response(problem: Problem, *, headers: Mapping[str, str] | None = None) -> Response:
    """The Starlette response for ``problem`` (plus ``headers``)."""
    return Response(
        problem.body(), problem.status, headers={**problem.headers(), **(headers or {})}
    )


async def _validation_failed(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = {"detail": [_public_error(error) for error in errors]}
    return JSONResponse(body, 422, headers=no_store_headers())


async def _body_too_large(request: Request, exc: Exception) -> Response:
    limit = exc.limit if isinstance(exc, BodyTooLarge) else 0
    return problem_response(too_large_problem(limit), headers={"Connection": "close"})


async def _maybe_outage(request: Request, exc: Exception) -> Response:
    outage = classify_outage(exc)
    if outage is None:
        raise exc  # not an outage: the last resort answers 500 (and it is logged)
    logger.warning("%s answered 503: %s (%s)", request.method, outage.kind, type(exc).__name__)
    return problem_response(outage_problem(outage))


async def _server_error(request: Request, exc: Exception) -> Response:
    return problem_response(server_error_problem())


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
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(Exception, _server_error)
