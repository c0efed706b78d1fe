"""``SeerrperfMiddleware``: outages answered 503 problem+json, every error ``no-store``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import psycopg
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import Error as DjangoDatabaseError
from django.http import HttpRequest, HttpResponseBase

from seerrperf._headers import no_store_headers
from seerrperf._web import (
    Outage,
    classify_outage,
    declared_length,
    outage_problem,
    too_large_problem,
)

from ._responses import problem_response
from ._state import config

__all__ = ["SeerrperfMiddleware", "classify_django_outage"]

logger = logging.getLogger("seerrperf.django")

_CACHING: Final = ("Cache-Control", "Expires", "ETag", "Last-Modified")


def classify_django_outage(exc: BaseException) -> Outage | None:
    """:func:`~seerrperf.classify_outage`, seeing through Django's database error wrappers.

    Django re-raises a psycopg error as ``django.db.OperationalError`` (and
    its siblings) with the driver's error as ``__cause__``: that cause is
    what is classified. Any other exception is classified by itself.
    """
    if isinstance(exc, DjangoDatabaseError) and isinstance(exc.__cause__, psycopg.Error):
        return classify_outage(exc.__cause__)
    return classify_outage(exc)


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code >= 400:
        for name in _CACHING:
            if name in response:
                del response[name]
        for name, value in no_store_headers().items():
            response[name] = value
    return response


class SeerrperfMiddleware:
    """The outage contract for every view (sync or async); put it first in ``MIDDLEWARE``.

    - A dependency outage raised by a view -- PostgreSQL unreachable or too
      slow (also through Django's ``OperationalError``), no pooled connection
      in time, TMDB down or rate-limiting, a lock not acquired in time --
      answers ``503 application/problem+json`` with ``Retry-After`` and
      ``no-store``, logged as one warning line. A transaction the view had
      open (``atomic()``, ``ATOMIC_REQUESTS``) was rolled back by Django
      before this answers, so nothing is half-written. Other exceptions go
      on to Django's own handling (500).
    - A request whose ``Content-Length`` is over ``SEERRPERF["MAX_BODY_SIZE"]``
      answers 413 problem+json before the view runs.
    - Every response with status 400 or above gets ``Cache-Control:
      no-store`` and loses ``Expires``, ``ETag`` and ``Last-Modified``.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode: bool = bool(iscoroutinefunction(get_response))
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self._acall(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return _no_store(response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        response = await self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return _no_store(response)

    def _refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        limit = config().integration.max_body_size
        if limit is None:
            return None
        declared = declared_length(request.META.get("CONTENT_LENGTH"))
        if declared is not None and declared > limit:
            return problem_response(too_large_problem(limit))
        return None

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        """Answer an outage with the 503 problem; leave anything else to Django."""
        outage = classify_django_outage(exception)
        if outage is None:
            return None
        logger.warning(
            "%s answered 503: %s (%s)", request.method, outage.kind, type(exception).__name__
        )
        return problem_response(outage_problem(outage))
