"""Error handlers: the outage contract, 413 as a problem, a 500 that says nothing."""

from __future__ import annotations

import logging
from typing import Final

import psycopg
from flask import Flask, Response, request
from werkzeug.exceptions import InternalServerError, RequestEntityTooLarge

from seerrperf._errors import CacheLoadAbortedError, LockTimeout, TmdbError
from seerrperf._web import classify_outage, outage_problem, server_error_problem, too_large_problem

from ._responses import problem_response

__all__ = ["OUTAGE_TYPES", "add_error_handlers"]

logger = logging.getLogger("seerrperf.flask")

OUTAGE_TYPES: Final[tuple[type[Exception], ...]] = (
    psycopg.Error,
    TmdbError,
    LockTimeout,
    CacheLoadAbortedError,
    ExceptionGroup,
)
"""The exception classes whose handler asks :func:`classify_outage`; others are not outages."""


def _maybe_outage(exc: Exception) -> Response:
    outage = classify_outage(exc)
    if outage is None:
        raise exc  # not an outage: Flask logs it and answers 500 (the handler below)
    logger.warning("%s answered 503: %s (%s)", request.method, outage.kind, type(exc).__name__)
    return problem_response(outage_problem(outage))


def _too_large(exc: RequestEntityTooLarge) -> Response:
    limit = request.max_content_length
    return problem_response(too_large_problem(0 if limit is None else limit))


def _server_error(exc: InternalServerError) -> Response:
    return problem_response(server_error_problem())


def _has_handler(app: Flask, code: int | None, kind: type[BaseException]) -> bool:
    return kind in app.error_handler_spec[None][code]


def add_error_handlers(app: Flask) -> None:
    """Give ``app`` the error contract (:meth:`Seerrperf.init_app` calls this).

    - A dependency outage (database, TMDB, lock; see ``docs/outages.md``)
      answers 503 ``application/problem+json`` with ``Retry-After`` and
      ``no-store``, logged as one warning line without a traceback. Other
      database and TMDB errors go on to Flask's 500 handling, which logs
      the traceback.
    - A body over ``MAX_CONTENT_LENGTH`` that werkzeug finds while reading
      it answers 413 problem+json.
    - A 500 answers problem+json that says nothing of the cause (with
      ``PROPAGATE_EXCEPTIONS``, as in debug and testing mode, Flask raises
      instead).

    A handler the app registered itself for one of these classes (or 500,
    413) before this call is kept.
    """
    for kind in OUTAGE_TYPES:
        if not _has_handler(app, None, kind):
            app.register_error_handler(kind, _maybe_outage)
    if not _has_handler(app, 413, RequestEntityTooLarge):
        app.register_error_handler(RequestEntityTooLarge, _too_large)
    if not _has_handler(app, 500, InternalServerError):
        app.register_error_handler(InternalServerError, _server_error)
