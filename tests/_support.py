"""Scaffolding shared by every test folder (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

SENTINEL = "s3cr3t-sentinel"
"""A secret that must never appear in a message, a log line, a repr or a cache key."""


REQUIRE_SERVICES_ENV = "SEERRPERF_REQUIRE_SERVICES"
"""Set to 1 (as ``.ci/run`` does) to fail, not skip, when a required program is missing."""


def require_program(name: str, debian_package: str) -> str:
    """Return the path of ``name`` (PgBouncer, promtool, gunicorn...), for tests that run it.

    On a developer machine without it the test is skipped with a hint; under
    ``SEERRPERF_REQUIRE_SERVICES=1`` (CI) the test fails instead, so a missing
    service can never pass as a silent skip.
    """
    import shutil

    import pytest

    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found:
        return found
    message = f"{name} is not installed (Debian package {debian_package!r}: apt-get install it)"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pytest.skip raises


@contextlib.asynccontextmanager
async def uvicorn_workers(
    app: str, *args: str, env: Mapping[str, str], workers: int, socket_dir: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` (``module:attr``) with ``uvicorn --workers`` on a Unix socket.

    Yields a client once every worker has run its lifespan (uvicorn says so
    on stderr; no polling); stops the server afterwards.
    """
    import sys

    import anyio
    import httpx

    socket_path = socket_dir / "uvicorn.sock"
    command = [
        sys.executable, "-m", "uvicorn", app, *args, "--uds", str(socket_path),
        "--workers", str(workers), "--log-level", "info",
    ]  # fmt: skip
    async with await anyio.open_process(command, env={**os.environ, **env}) as server:
        try:
            assert server.stderr is not None
            seen = b""
            with anyio.fail_after(120):
                while seen.count(b"Application startup complete") < workers:
                    try:
                        seen += await server.stderr.receive()
                    except anyio.EndOfStream:
                        raise AssertionError(seen.decode(errors="replace")) from None
            transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://app", timeout=60
            ) as client:
                yield client
        finally:
            server.terminate()
            with anyio.fail_after(60):
                await server.wait()
