"""Scaffolding shared by every test folder (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class PgBouncer:
    """A private PgBouncer in front of a PostgreSQL server, for tests.

    It listens on a free port of 127.0.0.1, keeps its configuration, user list
    and log in a temporary directory, trusts every user it lists (the
    embedded PostgreSQL trusts local connections too), and runs as ``nobody``
    when the tests run as root (PgBouncer refuses to run as root)::

        with PgBouncer(require_program("pgbouncer", "pgbouncer"), postgres_dsn) as bouncer:
            psycopg.connect(bouncer.dsn())

    Args:
        binary: The ``pgbouncer`` program.
        server_dsn: Where the PostgreSQL server is (host and port are used).
        pool_mode: ``"transaction"`` (the default), ``"session"`` or ``"statement"``.
        pool_size: Server connections per database and user: small, so that
            clients share them and anything one client leaves on a server
            connection is seen by others (``server_round_robin`` is on, so
            successive clients visit every server connection).
        users: User names PgBouncer accepts.
        settings: Extra ``[pgbouncer]`` settings.
    """

    def __init__(
        self,
        binary: str,
        server_dsn: str,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 4,
        users: tuple[str, ...] = ("postgres",),
        settings: dict[str, str] | None = None,
    ) -> None:
        import socket
        import tempfile
        from pathlib import Path

        import psycopg.conninfo

        server = psycopg.conninfo.conninfo_to_dict(server_dsn)
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="seerrperf-pgbouncer-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.log = self.root / "pgbouncer.log"
        config = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.root / "userlist.txt"),
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            "server_round_robin": "1",
            "max_client_conn": "2000",
            "logfile": str(self.log),
            "admin_users": "postgres",
            "ignore_startup_parameters": "extra_float_digits",
            **(settings or {}),
        }
        host, port = server.get("host", "127.0.0.1"), server.get("port", "5432")
        lines = ["[databases]", f"* = host={host} port={port}", "", "[pgbouncer]"]
        lines += [f"{key} = {value}" for key, value in config.items()]
        (self.root / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        (self.root / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        self._process: Any = None

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        """A DSN that connects through PgBouncer."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 20.0) -> None:
        """Start PgBouncer and wait until it accepts connections."""
        import os
        import pwd
        import socket
        import subprocess
        import time

        user = None
        if os.geteuid() == 0:
            user = "nobody"
            entry = pwd.getpwnam(user)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._process = subprocess.Popen(
            [self.binary, str(self.root / "pgbouncer.ini")],
            user=user,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)  # polling a port that is not open yet: nothing to wait on
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of PgBouncer's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop PgBouncer (it closes every client and server connection)."""
        import subprocess

        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
