"""WSGI middleware: error responses ``no-store``, declared bodies over the limit refused unread,
redirects to the request's own host made relative. Pure WSGI: no Flask import.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeAlias

from werkzeug.exceptions import RequestEntityTooLarge

from seerrperf import _validate
from seerrperf._web import (
    BodyCounter,
    Problem,
    declared_length,
    error_headers,
    relative_location,
    too_large_problem,
)

__all__ = ["WsgiGuard"]

ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]
)
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WsgiApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _status_code(status: str) -> int:
    """The code of a WSGI status line (``"404 NOT FOUND"``); 0 when it has none."""
    code = status.split(" ", 1)[0]
    return int(code) if code.isascii() and code.isdigit() and len(code) == 3 else 0


class WsgiGuard:
    """Wraps a WSGI app: what :meth:`Seerrperf.init_app` puts around ``app.wsgi_app``.

    - Every response with status 400 or above gets ``Cache-Control:
      no-store`` and loses ``Expires``, ``ETag`` and ``Last-Modified``,
      whoever built it: Flask's HTML error pages, ``abort()``, a view's own
      ``return body, 409``, another middleware.
    - A request whose ``Content-Length`` is over ``max_body_size`` is answered
      413 problem+json before the app runs, so nothing reads its body. A
      body without a length (chunked) is counted as the app reads it: the
      read that would pass the limit raises werkzeug's
      ``RequestEntityTooLarge`` (413), having read at most one byte more --
      where werkzeug alone would stop at ``MAX_CONTENT_LENGTH`` and hand the
      app a silently cut body.
    - A redirect whose ``Location`` points at the request's own ``Host``
      (werkzeug's strict-slashes redirect, ``url_for(..., _external=True)``)
      is sent as a relative reference.

    Args:
        app: The WSGI app.
        max_body_size: Largest body accepted, in bytes; ``None`` for no limit.
        relative_redirects: Rewrite same-origin ``Location`` headers.

    Raises:
        ConfigurationError: a bad argument.
    """

    def __init__(
        self, app: WsgiApp, *, max_body_size: int | None, relative_redirects: bool = True
    ) -> None:
        self.app: WsgiApp = _validate.function("app", app, "a WSGI app")
        self.max_body_size: int | None = (
            None if max_body_size is None else BodyCounter(max_body_size).limit
        )
        self.relative_redirects: bool = _validate.flag("relative_redirects", relative_redirects)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.max_body_size is not None:
            counter = BodyCounter(self.max_body_size)
            declared = declared_length(environ.get("CONTENT_LENGTH"))
            if counter.too_large(declared):
                return _answer(start_response, too_large_problem(counter.limit))
            stream = environ.get("wsgi.input")
            if declared is None and stream is not None:
                environ["wsgi.input"] = _BoundedInput(stream, counter)
        return self.app(environ, self._guarded(environ, start_response))

    def _guarded(self, environ: dict[str, Any], start_response: StartResponse) -> StartResponse:
        host = environ.get("HTTP_HOST") or None
        scheme = str(environ.get("wsgi.url_scheme", "http"))

        def guarded(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            code = _status_code(status)
            if code >= 400:
                headers = error_headers(headers)
            elif 300 <= code < 400 and self.relative_redirects:
                headers = [
                    (name, relative_location(value, scheme=scheme, host=host))
                    if name.lower() == "location"
                    else (name, value)
                    for name, value in headers
                ]
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        return guarded


class _BoundedInput(io.RawIOBase):
    """``wsgi.input`` for a body of unknown length: refuses the first byte over the limit."""

    def __init__(self, stream: Any, counter: BodyCounter) -> None:
        super().__init__()
        self._stream = stream
        self._counter = counter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        counter = self._counter
        room = counter.limit - counter.received
        data = self._stream.read(min(len(buffer), room)) if room > 0 else b""
        counter.add(len(data))
        # At the limit, one byte more says whether the body goes on: asked now,
        # not on the next read, which werkzeug (capped at MAX_CONTENT_LENGTH)
        # would never make.
        if counter.received >= counter.limit and self._stream.read(1):
            raise RequestEntityTooLarge()
        buffer[: len(data)] = data
        return len(data)


def _answer(start_response: StartResponse, problem: Problem) -> list[bytes]:
    body = problem.body()
    headers = [*problem.headers().items(), ("Content-Length", str(len(body)))]
    start_response(f"{problem.status} {problem.title}", headers)
    return [body]
