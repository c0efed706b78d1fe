"""A hostile upstream on 127.0.0.1: a stdlib server whose every answer is scripted byte by byte.

Each request is answered by the first script of the queue (the last one
repeats), written as raw HTTP so that it can be anything a real network or
an attacker sends: a body dripped a byte at a time, headers dripped, a
gigabyte without end, a gzip bomb, headers no library would produce. The
server runs in threads of its own, so sync and async clients use it alike.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

Script = Callable[["Connection"], None]


@dataclass
class Connection:
    """What a script writes to: the socket, and the server's stop event to pace drips by."""

    sock: socket.socket
    stopping: threading.Event
    sent: list[int] = field(default_factory=lambda: [0])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent[0] += len(data)

    def drip(self, data: bytes, every: float) -> None:
        """Send ``data`` one byte every ``every`` seconds (until the client leaves)."""
        for index in range(len(data)):
            if self.stopping.wait(every):
                return
            self.send(data[index : index + 1])


def head(status: int, *headers: tuple[str, str], length: int | None = None) -> bytes:
    """A response head with ``headers`` (raw: nothing is checked or escaped)."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(status: int, body: bytes, *headers: tuple[str, str]) -> Script:
    """Answer at once with ``body``."""

    def script(conn: Connection) -> None:
        conn.send(head(status, ("Content-Type", "application/json"), *headers, length=len(body)))
        conn.send(body)

    return script


def drip_body(body: bytes, every: float) -> Script:
    """Headers at once, then the body a byte at a time."""

    def script(conn: Connection) -> None:
        conn.send(head(200, ("Content-Type", "application/json"), length=len(body)))
        conn.drip(body, every)

    return script


def drip_headers(every: float) -> Script:
    """The status line and headers a byte at a time."""

    def script(conn: Connection) -> None:
        conn.drip(head(200, length=2) + b"{}", every)

    return script


def endless(chunk: bytes = b" " * 65536, *, length: int | None = None) -> Script:
    """A body that does not end (or is ``length`` long): sent until the client leaves."""

    def script(conn: Connection) -> None:
        conn.send(head(200, ("Content-Type", "application/json"), length=length))
        total = 0
        while not conn.stopping.is_set() and (length is None or total < length):
            conn.send(chunk)
            total += len(chunk)

    return script


@cache
def gzip_bomb(inflated: int = 256 * 1024 * 1024) -> bytes:
    """``inflated`` zero bytes, gzip-compressed (256 MB -> about 255 KB), built in a blink.

    One megabyte is compressed once with a full flush (which resets the
    dictionary, so every such block compresses to the same bytes) and the
    block repeated, between a gzip header and a trailer with the right CRC
    and size: a valid gzip stream without compressing 256 MB.
    """
    block = b"0" * (1024 * 1024)
    count, rest = divmod(inflated, len(block))
    assert rest == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return header + packed * count + end + trailer


class _Handler(socketserver.BaseRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        self.request.settimeout(30)
        with contextlib.suppress(OSError):
            data = b""
            while b"\r\n\r\n" not in data:
                received = self.request.recv(65536)
                if not received:
                    return
                data += received
            script = self.server.take(data)
            script(Connection(self.request, self.server.stopping, self.server.sent))


class HostileServer(socketserver.ThreadingTCPServer):
    """Serve scripts on 127.0.0.1 (a free port) until the ``with`` block ends.

    Attributes:
        requests: Request heads received, in order.
        sent: Bytes written to clients in all (``sent[0]``).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *scripts: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scripts = list(scripts)
        self.requests: list[bytes] = []
        self.stopping = threading.Event()
        self.sent = [0]
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/3"

    def take(self, request: bytes) -> Script:
        with self._lock:
            self.requests.append(request)
            return self.scripts.pop(0) if len(self.scripts) > 1 else self.scripts[0]

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileServer]:
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.shutdown()
            self.server_close()
            thread.join(10)
