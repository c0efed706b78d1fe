"""Run an ASGI app under uvicorn inside the current event loop, on a free port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn


class _Server(uvicorn.Server):
    """A uvicorn server that says when its start-up is over."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.startup_done.set()


@asynccontextmanager
async def serve(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn for the duration of the block.

    The app's lifespan runs first; the block starts once it is done.

    Args:
        app: An ASGI app.
        host: Address to listen on.
        port: Port; ``0`` picks a free one.
        log_level: uvicorn's log level.

    Yields:
        The base URL, e.g. ``"http://127.0.0.1:54321"``.

    Raises:
        RuntimeError: The app's start-up failed (uvicorn logged why).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False)
    server = _Server(config)
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            await server.startup_done.wait()
            if not server.started:
                raise RuntimeError("the app failed to start (see uvicorn's log)")
            try:
                yield f"http://{host}:{port}"
            finally:
                server.should_exit = True
