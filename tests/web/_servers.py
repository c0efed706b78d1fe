"""Run an app under real gunicorn (WSGI) or uvicorn (ASGI) on a Unix socket, for tests/web/."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import seerrperf

SRC = Path(seerrperf.__file__).resolve().parents[1]
START_TIMEOUT = 90.0
_BOOTED = re.compile(r"Booting worker with pid: (\d+)|Started server process \[(\d+)\]")


@dataclass
class Log:
    """gunicorn's stderr, line by line, with a condition to wait on."""

    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    ended: bool = False

    def follow(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def booted(self) -> list[int]:
        return [int(m.group(1) or m.group(2)) for m in map(_BOOTED.search, self.lines) if m]

    def wait_for_workers(self, workers: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.changed:
            while len(self.booted()) < workers:
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    raise AssertionError("gunicorn did not start:\n" + "\n".join(self.lines))
                self.changed.wait(left)


@dataclass
class Server:
    """A running gunicorn: a client on its socket, its log, how it was started."""

    client: httpx.Client
    log: Log
    workers: int
    worker_class: str


@contextmanager
def gunicorn(
    app: str,
    *,
    workers: int,
    worker_class: str,
    env: Mapping[str, str],
    socket_dir: Path,
    pythonpath: Sequence[Path] = (),
    options: Sequence[str] = (),
) -> Iterator[Server]:
    """Serve ``app`` with ``workers`` gunicorn workers until the block ends.

    ``worker_class`` is ``sync`` or ``gthread`` (then with 4 threads each).
    Yields once every worker has booted (requests queue on the socket until one accepts).
    """
    socket_path = socket_dir / f"gunicorn-{worker_class}-{workers}.sock"
    command = [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"unix:{socket_path}", "--workers", str(workers),
        "--worker-class", worker_class, "--no-control-socket",
        "--timeout", "60", "--graceful-timeout", "10", "--log-level", "info",
    ]  # fmt: skip
    if worker_class == "gthread":
        command += ["--threads", "4"]
    command += list(options)
    with _serving(command, socket_path, workers, worker_class, env, pythonpath) as server:
        yield server


@contextmanager
def uvicorn(
    app: str,
    *,
    workers: int,
    env: Mapping[str, str],
    socket_dir: Path,
    pythonpath: Sequence[Path] = (),
    options: Sequence[str] = (),
) -> Iterator[Server]:
    """Serve the ASGI ``app`` with ``uvicorn --workers`` until the block ends.

    ``workers`` must be 2 or more: then uvicorn's supervisor binds the socket
    before it starts the workers, so requests queue until one accepts.
    """
    assert workers >= 2, "one worker binds the socket after it says it started"
    socket_path = socket_dir / f"uvicorn-{workers}.sock"
    command = [
        sys.executable, "-m", "uvicorn", app, "--uds", str(socket_path),
        "--workers", str(workers), "--log-level", "info", *options,
    ]  # fmt: skip
    with _serving(command, socket_path, workers, "uvicorn", env, pythonpath) as server:
        yield server


@contextmanager
def _serving(
    command: list[str],
    socket_path: Path,
    workers: int,
    kind: str,
    env: Mapping[str, str],
    pythonpath: Sequence[Path],
) -> Iterator[Server]:
    path = os.pathsep.join(str(p) for p in (SRC, *pythonpath))
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONPATH": path},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = Log()
    reader = threading.Thread(target=log.follow, args=(process.stderr,), daemon=True)
    reader.start()
    try:
        log.wait_for_workers(workers, START_TIMEOUT)
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://app", timeout=60) as client:
            yield Server(client, log, workers, kind)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
