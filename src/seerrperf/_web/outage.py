"""Dependency outages, and the answer they get: 503, ``Retry-After``, ``no-store``, problem+json.

The contract, the same for every web integration (``docs/outages.md``):

- An exception that says a dependency cannot answer *now*, so the same
  request may well succeed shortly, is an **outage**. It is answered
  ``503 Service Unavailable`` with ``Retry-After`` (whole seconds: the
  dependency's own figure where the error carries one, a small default
  otherwise), ``Cache-Control: no-store`` and an RFC 9457
  ``application/problem+json`` body whose ``type``, ``title`` and ``detail``
  name the kind of outage and nothing else: no exception message, no host,
  no SQL, no credential.
- Every other exception is not an outage: a unique violation, a syntax
  error, a TMDB 404 or a refused TMDB credential is the app's to handle (or
  a bug), and the framework's last resort answers it ``500`` -- also
  ``no-store``, with a body that says nothing about the cause.
- Every error response (status 400 and above) is ``no-store``, whoever built
  it (:func:`error_headers`): an error must never be cached by a browser, a
  proxy or a CDN.

What counts as an outage, and why (:func:`classify_outage`):

=========================================  ========================  =====
exception                                  kind                      retry
=========================================  ========================  =====
``psycopg.OperationalError`` without a     ``database-unavailable``  5 s
SQLSTATE (connection refused, lost, reset;
``psycopg_pool.PoolTimeout``,
``TooManyRequests``, ``PoolClosed``)
SQLSTATE class 08 (connection exception),  ``database-unavailable``  5 s
53 (insufficient resources: too many
connections, disk full, out of memory), 57
(operator intervention: admin or crash
shutdown, cannot connect now, idle-session
timeout), 58 (system/I/O error)
``25006`` read-only transaction (a write   ``database-unavailable``  5 s
reached a standby, e.g. after a failover)
``57014`` query canceled (the server's     ``database-timeout``      5 s
``statement_timeout``), ``QueryTimeout``
(the pool's client-side ``query_timeout``)
and ``55P03`` lock
not available (``lock_timeout``)
``TmdbUnavailable`` (5xx, timeout,         ``upstream-unavailable``  5 s
connection failure after the retries)
``TmdbRateLimited`` (429 after the         ``upstream-rate-limited`` the
retries)                                                             pause
``LockLost`` (the session holding an       ``database-unavailable``  5 s
advisory lock died: nothing committed)
``LockTimeout`` (a per-key lock not        ``busy``                  1 s
acquired in time: nothing ran),
``CacheOverloadedError`` (too many loads
in flight)
``CacheLoadAbortedError``,                 ``interrupted``           1 s
``CacheLoadTimeout`` (a shared load ended
without a result)
an ``ExceptionGroup`` whose every leaf is  the first leaf's          --
an outage
=========================================  ========================  =====

Not outages: SQLSTATE class 40 (serialization failure, deadlock: the
transaction is the app's to retry, and a deadlock is a lock-ordering bug),
``25P03`` idle-in-transaction timeout (the request itself held a transaction
open too long), every integrity, data and programming error, other
``OperationalError`` subclasses with a SQLSTATE (``54000`` program limit,
``55000``/``55006`` object state, ``F0000`` configuration file), TMDB 404s
(``TmdbNotFound``), refused credentials (``TmdbAuthError``: an operator must
act, retrying does not help) and unusable TMDB answers
(``TmdbResponseError``). An exception is classified by itself, never by its
``__cause__``: an app that wraps an outage in its own error decides itself.

A statement timeout counts although a bad query can cause it too: the
server did not answer in time, which is what a client needs to know, and the
same query may pass when the server is less loaded.

Everything here is pure: no I/O, no framework.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from seerrperf._errors import (
    CacheLoadAbortedError,
    CacheLoadTimeout,
    CacheOverloadedError,
    LockLost,
    LockTimeout,
    QueryTimeout,
    TmdbRateLimited,
    TmdbUnavailable,
)
from seerrperf._headers import canonical_json, no_store_headers

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_BASE",
    "Outage",
    "Problem",
    "classify_outage",
    "error_headers",
    "outage_problem",
    "server_error_problem",
    "too_large_problem",
]

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://github.com/seerrperf/seerrperf/blob/main/docs/outages.md#"
"""Where each kind of outage is documented; a problem's ``type`` is this plus the kind."""

MAX_RETRY_AFTER: Final = 3600
# Headers an error response must not carry: they would let a cache keep it or
# revalidate it into a success.
_CACHING_HEADERS: Final = frozenset({"cache-control", "expires", "etag", "last-modified"})


@dataclass(frozen=True, slots=True)
class Outage:
    """A dependency that cannot answer now, as told to a client.

    Attributes:
        kind: A stable slug, the end of the problem's ``type`` URI:
            ``database-unavailable``, ``database-timeout``,
            ``upstream-unavailable``, ``upstream-rate-limited``, ``busy`` or
            ``interrupted``.
        component: What failed: ``postgres``, ``tmdb``, ``lock`` or ``cache``.
        title: A short, fixed summary of the kind.
        detail: A fixed sentence for the client; never the exception's message.
        retry_after: Whole seconds the client should wait, at least 1.
    """

    kind: str
    component: str
    title: str
    detail: str
    retry_after: int


_DATABASE_UNAVAILABLE = Outage(
    "database-unavailable",
    "postgres",
    "Database unavailable",
    "The database cannot be reached or has no free connection. Try again later.",
    5,
)
_DATABASE_TIMEOUT = Outage(
    "database-timeout",
    "postgres",
    "Database timeout",
    "The database did not answer in time. Try again later.",
    5,
)
_UPSTREAM_UNAVAILABLE = Outage(
    "upstream-unavailable",
    "tmdb",
    "Upstream unavailable",
    "The Movie Database (TMDB) is not answering. Try again later.",
    5,
)
_UPSTREAM_RATE_LIMITED = Outage(
    "upstream-rate-limited",
    "tmdb",
    "Upstream rate limit",
    "The Movie Database (TMDB) asked us to slow down. Try again later.",
    10,
)
_BUSY = Outage(
    "busy",
    "lock",
    "Busy",
    "Another request is working on the same item; nothing was changed. Try again.",
    1,
)
_INTERRUPTED = Outage(
    "interrupted",
    "cache",
    "Interrupted",
    "The work this request was waiting for was interrupted. Try again.",
    1,
)

# SQLSTATE classes (first two characters) and codes that mean "cannot answer now".
_PG_CLASSES: Final = {
    "08": _DATABASE_UNAVAILABLE,
    "53": _DATABASE_UNAVAILABLE,
    "57": _DATABASE_UNAVAILABLE,
    "58": _DATABASE_UNAVAILABLE,
}
_PG_STATES: Final = {
    "57014": _DATABASE_TIMEOUT,  # query_canceled: statement_timeout
    "55P03": _DATABASE_TIMEOUT,  # lock_not_available: lock_timeout
    "25006": _DATABASE_UNAVAILABLE,  # read_only_sql_transaction: a standby
}


def _postgres(exc: psycopg.Error) -> Outage | None:
    state = getattr(exc, "sqlstate", None)
    if not isinstance(state, str) or not state:
        # No SQLSTATE: the client side failed (connect, lost connection, pool).
        return _DATABASE_UNAVAILABLE if isinstance(exc, psycopg.OperationalError) else None
    return _PG_STATES.get(state) or _PG_CLASSES.get(state[:2])


def _retry_after(exc: BaseException, default: int) -> int:
    """The error's own ``retry_after`` (seconds) where it has a usable one."""
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return default
    if not math.isfinite(seconds) or seconds < 0:
        return default
    return max(1, min(MAX_RETRY_AFTER, math.ceil(seconds)))


def classify_outage(exc: BaseException) -> Outage | None:
    """Decide whether ``exc`` is a dependency outage, and which.

    Args:
        exc: Any exception; it is read, never raised, and a hostile one (odd
            attributes) cannot make this raise.

    Returns:
        The :class:`Outage`, with ``retry_after`` taken from the error's own
        ``retry_after`` attribute when it has a finite non-negative one
        (rounded up, 1 to 3600 s); ``None`` when ``exc`` is not an outage.
    """
    if isinstance(exc, BaseExceptionGroup):
        leaves = [classify_outage(leaf) for leaf in exc.exceptions]
        if not leaves or any(leaf is None for leaf in leaves):
            return None
        return leaves[0]
    outage: Outage | None = None
    if isinstance(exc, QueryTimeout):  # the pool's client-side deadline: before psycopg.Error
        outage = _DATABASE_TIMEOUT
    elif isinstance(exc, psycopg.Error):
        outage = _postgres(exc)
    elif isinstance(exc, TmdbUnavailable):
        outage = _UPSTREAM_UNAVAILABLE
    elif isinstance(exc, TmdbRateLimited):
        outage = _UPSTREAM_RATE_LIMITED
    elif isinstance(exc, LockLost):  # the session died under the lock: nothing was saved
        outage = _DATABASE_UNAVAILABLE
    elif isinstance(exc, LockTimeout | CacheOverloadedError):
        outage = _BUSY
    elif isinstance(exc, CacheLoadAbortedError | CacheLoadTimeout):
        outage = _INTERRUPTED
    if outage is None:
        return None
    seconds = _retry_after(exc, outage.retry_after)
    if seconds == outage.retry_after:
        return outage
    return Outage(outage.kind, outage.component, outage.title, outage.detail, seconds)


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem response: status, headers and body, framework-neutral.

    Attributes:
        status: The HTTP status.
        title: A short summary of the problem type (for ``about:blank``, the
            status's reason phrase).
        detail: A sentence for the client about this occurrence, or ``None``.
        type: A URI naming the problem type; ``about:blank`` when the status
            says it all.
        retry_after: Whole seconds for ``Retry-After``, or ``None``.
    """

    status: int
    title: str
    detail: str | None = None
    type: str = "about:blank"
    retry_after: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the problem's members (``type``, ``title``, ``status``, ``detail``)."""
        members: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            members["detail"] = self.detail
        return members

    def body(self) -> bytes:
        """Return the ``application/problem+json`` body: canonical JSON (sorted keys)."""
        return canonical_json(self.as_dict())

    def headers(self) -> dict[str, str]:
        """Return ``Content-Type``, ``Cache-Control: no-store`` and, if set, ``Retry-After``."""
        headers = {"Content-Type": PROBLEM_CONTENT_TYPE, **no_store_headers()}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def outage_problem(outage: Outage) -> Problem:
    """Return the 503 answer to ``outage``.

    Returns:
        A :class:`Problem` with status 503, the outage's ``Retry-After``, and
        ``type`` = :data:`PROBLEM_TYPE_BASE` + the kind.
    """
    return Problem(
        status=503,
        title=outage.title,
        detail=outage.detail,
        type=PROBLEM_TYPE_BASE + outage.kind,
        retry_after=outage.retry_after,
    )


def server_error_problem() -> Problem:
    """Return the answer to an exception that is not an outage: a 500 that says nothing more."""
    return Problem(
        status=500,
        title="Internal Server Error",
        detail="The server could not answer this request.",
    )


def too_large_problem(limit: int) -> Problem:
    """Return the 413 answer to a request body larger than ``limit`` bytes."""
    return Problem(
        status=413,
        title="Content Too Large",
        detail=f"The request body must not be larger than {limit} bytes.",
    )


def error_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Make an error response's headers uncacheable.

    Args:
        headers: The response's headers, as a mapping or as ``(name, value)``
            pairs (repeated names such as ``Set-Cookie`` are kept).

    Returns:
        The pairs in their order without ``Cache-Control``, ``Expires``,
        ``ETag`` and ``Last-Modified`` (names matched case-insensitively),
        followed by ``Cache-Control: no-store``.
    """
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    kept = [(name, value) for name, value in pairs if name.lower() not in _CACHING_HEADERS]
    return [*kept, *no_store_headers().items()]
