"""A minimal HTTP/1.1 server on anyio's TCP listener, for FakeTmdb.

Enough HTTP for benchmarks and tests, and no runtime dependency: persistent
connections (HTTP/1.1 keep-alive by default, ``Connection: close`` honoured),
every response framed with ``Content-Length``, request bodies read and
ignored, no chunked request bodies, no TLS. Each connection is served by its
own task, so a slow response never holds up other connections. Runs on
asyncio and trio.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import NamedTuple

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["HttpServer", "Reply"]

_MAX_HEAD = 64 * 1024
_HOST = "127.0.0.1"


class Reply(NamedTuple):
    """A response: status, headers (no framing headers) and the whole body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


Responder = Callable[[str, str, Mapping[str, str]], Awaitable[Reply]]
"""``(method, request target, headers with lower-case names) -> Reply``."""


class _Request(NamedTuple):
    method: str
    target: str
    version: str
    headers: dict[str, str]


def _parse_head(head: bytes) -> _Request | None:
    """Parse a request line and headers; ``None`` when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return _Request(parts[0], parts[1], parts[2], headers)


def _keep_alive(request: _Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _encode(reply: Reply, *, keep_alive: bool, with_body: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    lines.append(f"content-length: {len(reply.body)}")
    lines.append(f"connection: {'keep-alive' if keep_alive else 'close'}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + reply.body if with_body else head


def _plain(status: HTTPStatus) -> Reply:
    return Reply(int(status), (("content-type", "text/plain"),), status.phrase.encode())


class HttpServer:
    """Serve ``respond`` on 127.0.0.1 while the ``async with`` block runs.

    ``async with HttpServer(respond) as origin:`` yields
    ``"http://127.0.0.1:PORT"`` (a free port). Leaving the block closes the
    listener and every open connection. An exception raised in the block
    propagates unchanged (not wrapped in an exception group).

    Args:
        respond: Called once per request.
        on_connection: Called for every accepted connection.
    """

    def __init__(self, respond: Responder, *, on_connection: Callable[[], None]) -> None:
        self._respond = respond
        self._on_connection = on_connection
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> str:
        listener = await anyio.create_tcp_listener(local_host=_HOST)
        port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self._accept, listener)
        self._task_group = task_group
        return f"http://{_HOST}:{port}"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task_group is not None
        task_group, self._task_group = self._task_group, None
        task_group.cancel_scope.cancel()
        # The block's own exception is not handed to the task group, so it
        # propagates as it is instead of inside an ExceptionGroup.
        await task_group.__aexit__(None, None, None)

    async def _accept(self, listener: anyio.abc.Listener[SocketStream]) -> None:
        async with listener:
            await listener.serve(self._connection)

    async def _connection(self, stream: SocketStream) -> None:
        self._on_connection()
        async with stream:
            receive = BufferedByteReceiveStream(stream)
            with contextlib.suppress(
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                while await self._exchange(stream, receive):
                    pass

    async def _exchange(self, stream: SocketStream, receive: BufferedByteReceiveStream) -> bool:
        """Answer one request; return whether the connection stays open."""
        try:
            head = await receive.receive_until(b"\r\n\r\n", _MAX_HEAD)
        except anyio.DelimiterNotFound:
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
            await stream.send(_encode(_plain(status), keep_alive=False))
            return False
        request = _parse_head(head)
        length = request.headers.get("content-length", "0") if request else ""
        if request is None or not (length.isascii() and length.isdigit()):
            await stream.send(_encode(_plain(HTTPStatus.BAD_REQUEST), keep_alive=False))
            return False
        if "transfer-encoding" in request.headers:
            await stream.send(_encode(_plain(HTTPStatus.NOT_IMPLEMENTED), keep_alive=False))
            return False
        if int(length):
            await receive.receive_exactly(int(length))
        reply = await self._respond(request.method, request.target, request.headers)
        keep_alive = _keep_alive(request)
        with_body = request.method != "HEAD"
        await stream.send(_encode(reply, keep_alive=keep_alive, with_body=with_body))
        return keep_alive
