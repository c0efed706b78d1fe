"""What the embedded servers share: a free loopback port, a private folder, the context protocol."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """Base of the embedded servers: ``start``/``stop`` by the subclass; a
    temporary folder ``_root`` removed by :meth:`close`; ``with`` starts and
    closes, and a failed start leaves nothing behind."""

    _root: Path

    def start(self) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete its temporary folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Self:
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
