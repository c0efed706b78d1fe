"""``PerProcess``: one object per process, made on first use after any fork, closed at exit.

Under ``gunicorn --preload`` the master imports the app and then forks the
workers: a socket, a thread or a held lock made before the fork is shared
with every worker or lost to it. An object behind a :class:`PerProcess` is
made by the first call in each process; a forked child forgets the parent's
(without closing it: its sockets are the parent's) and makes its own; a
process closes its own at exit. Pure Python: no framework import; the Flask
and Django integrations both use it (``seerrperf.flask.PerProcess``,
``seerrperf.django.PerProcess``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from seerrperf import _validate
from seerrperf._runtime import at_fork

__all__ = ["PerProcess"]

logger = logging.getLogger("seerrperf.web")

_T = TypeVar("_T")

_LIVE: weakref.WeakSet[PerProcess[Any]] = weakref.WeakSet()
# What a forked child inherited: never used there, never closed there (the
# parent owns its sockets), and kept so that no finaliser runs in the child.
_INHERITED: list[object] = []


class PerProcess(Generic[_T]):
    """Holds one object per process: made by ``factory`` on first use, after any fork.

    ::

        images = PerProcess(lambda: httpx.Client(timeout=10.0))

        @app.get("/image/<name>")
        def image(name: str):
            return images().get(f"https://cdn.example/{name}").content

    Threads of a process share the object; the first call makes it while the
    others wait. An exception from ``factory`` reaches the caller, and the
    next call tries again.

    Args:
        factory: Makes the object; called once per process (again after
            :meth:`close`).
        close: Closes it, at the process's exit and in :meth:`close`; by
            default its ``close()`` method if it has one.

    Raises:
        ConfigurationError: ``factory`` or ``close`` is not callable.
    """

    def __init__(
        self, factory: Callable[[], _T], *, close: Callable[[_T], object] | None = None
    ) -> None:
        self._factory = _validate.function("factory", factory, "a function making the object")
        if close is not None:
            _validate.function("close", close, "a function closing the object")
        self._close = close
        self._guard = threading.Lock()
        self._made: tuple[_T] | None = None  # a tuple, so that None can be made too
        _LIVE.add(self)
        at_fork(self, after_in_child=PerProcess._forget)

    def __repr__(self) -> str:
        return f"<PerProcess {'made' if self._made is not None else 'not made'} in {os.getpid()}>"

    @property
    def made(self) -> bool:
        """Whether this process has the object (without making it)."""
        return self._made is not None

    def __call__(self) -> _T:
        """Return this process's object, making it if it has none yet."""
        made = self._made
        if made is not None:
            return made[0]
        with self._guard:
            if self._made is None:
                self._made = (self._factory(),)
            return self._made[0]

    def peek(self) -> _T | None:
        """Return this process's object if it has one, else ``None``; makes nothing."""
        made = self._made
        return None if made is None else made[0]

    def close(self) -> None:
        """Close this process's object, if it has one; the next call makes a new one.

        Idempotent. Processes close theirs at exit by themselves; call this
        where exit hooks do not run (``os._exit``), or to start afresh.
        """
        with self._guard:
            made, self._made = self._made, None
        if made is not None:
            self._closing(made[0])

    def _closing(self, value: _T) -> None:
        if self._close is not None:
            self._close(value)
            return
        close = getattr(value, "close", None)
        if callable(close):
            close()

    def _forget(self) -> None:
        """In a forked child: the parent's object is not ours; nor is a lock held at the fork."""
        self._guard = threading.Lock()
        if self._made is not None:
            _INHERITED.append(self._made[0])
            self._made = None


def _close_at_exit() -> None:
    for holder in list(_LIVE):
        try:
            holder.close()
        except Exception:
            logger.exception("seerrperf could not close %r at exit", holder)


atexit.register(_close_at_exit)
