"""``DjangoAdvisoryLock``: an advisory lock in a transaction on Django's own connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import ClassVar, cast

import psycopg
from django.db import DatabaseError, connections, transaction

from seerrperf import _validate
from seerrperf._locks import KeyedLock
from seerrperf._pg.advisory import _AdvisoryLockBase, _lock_query

__all__ = ["DjangoAdvisoryLock"]


class DjangoAdvisoryLock(_AdvisoryLockBase):
    """Holds a key across every process and host, in a transaction of Django's connection.

    ::

        with lock(("movie", tmdb_id), timeout=5.0):
            if not MediaRequest.objects.filter(tmdb_id=tmdb_id).exists():
                MediaRequest.objects.create(tmdb_id=tmdb_id, ...)

    The block runs inside ``transaction.atomic(using=...)`` after
    ``pg_advisory_xact_lock``: the ORM's writes in the block are in the
    lock's transaction, so the key is released exactly when they commit (or
    roll back); no other process can see the row missing while it holds the
    key. Inside an outer ``atomic()`` (``ATOMIC_REQUESTS``) the key is held
    until that one commits. Threads of one process wanting the same key
    queue in a :class:`~seerrperf.KeyedLock` first, so only one of them
    waits in the database. The ids are :class:`~seerrperf.PgAdvisoryLock`'s:
    a Django process and a seerrperf pool exclude each other.

    Unlike :class:`~seerrperf.PgAdvisoryLock` it needs no pool of its own:
    each Django thread has its connection already.

    Args:
        namespace: Mixed into every lock id.
        using: The ``DATABASES`` alias.

    Raises:
        ConfigurationError: ``namespace`` or ``using`` is empty or not a str.
    """

    __slots__ = ("_using",)
    _kind: ClassVar[str] = "DjangoAdvisoryLock"

    def __init__(self, *, namespace: str = "seerrperf", using: str = "default") -> None:
        super().__init__(namespace)
        self._using = _validate.name("using", using)
        self._local = KeyedLock()

    def __call__(
        self, key: object, *, timeout: float | None = None
    ) -> AbstractContextManager[None]:
        """Return a context manager that holds ``key`` for its block.

        Args:
            key: A str, int, bytes, bool, None or a (nested) tuple of those.
            timeout: Seconds to wait in all (this process's queue and the
                database lock); ``None`` waits as long as it takes.

        Raises:
            ConfigurationError: ``key`` has another type, or ``timeout`` is
                negative or not finite.
            LockTimeout: (on entering) the key was not acquired in time.
        """
        if timeout is not None:
            timeout = _validate.duration("timeout", timeout)
        return self._hold(self.advisory_key(key), timeout)

    @contextmanager
    def _hold(self, lock_id: int, timeout: float | None) -> Iterator[None]:
        deadline = None if timeout is None else time.monotonic() + timeout
        local = cast(KeyedLock, self._local)(lock_id, timeout=timeout)
        with local, transaction.atomic(using=self._using):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                with connections[self._using].cursor() as cursor:
                    cursor.execute(_lock_query(lock_id, remaining))
            except DatabaseError as exc:
                if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                    raise self._db_timeout() from exc
                raise
            self._count_acquired(local)
            yield
