"""ASGI middleware: error responses ``no-store``, bounded bodies, relative redirects."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seerrperf import _validate
from seerrperf._web import (
    BodyCounter,
    Problem,
    declared_length,
    error_headers,
    relative_location,
    too_large_problem,
)
from seerrperf._web.config import DEFAULT_MAX_BODY_SIZE

__all__ = ["BodyTooLarge", "GuardMiddleware"]


class BodyTooLarge(HTTPException):
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
        self.app: ASGIApp = app
        self.max_body_size: int | None = (
            None if max_body_size is None else BodyCounter(max_body_size).limit
        )
        self.relative_redirects: bool = _validate.flag("relative_redirects", relative_redirects)

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
                            (key.encode("latin-1"), value.encode("latin-1")) for key, value in pairs
                        ],
                    }
            await send(message)

        return guarded


def _counted(receive: Receive, counter: BodyCounter) -> Receive:
    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request" and counter.add(len(message.get("body", b""))):
            raise BodyTooLarge(counter.limit)
        return message

    return counted


async def _send_problem(send: Send, problem: Problem) -> None:
    body = problem.body()
    headers = {**problem.headers(), "Content-Length": str(len(body)), "Connection": "close"}
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
