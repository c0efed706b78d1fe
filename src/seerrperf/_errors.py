"""The seerrperf error hierarchy, in one place.

::

    SeerrperfError
     +-- ConfigurationError (also ValueError)   a bad argument or setting, named
     +-- HeaderParseError (also ValueError)     a peer's header refused by a strict parser
     +-- LockTimeout (also TimeoutError)        a lock not acquired in time
     +-- CacheLoadAbortedError                  a shared cache load ended without a result
     +-- CacheLoadTimeout (also TimeoutError)   a shared cache load ran past its load_timeout
     +-- CacheOverloadedError                   a cache load refused: max_loading loads running
     +-- TmdbError                              TMDB gave no usable answer (.status, .path)
     |    +-- TmdbNotFound                        404
     |    +-- TmdbAuthError                       401/403
     |    +-- TmdbRateLimited                     429 after every retry
     |    +-- TmdbUnavailable                     5xx, timeout, connection failure
     |    +-- TmdbResponseError                   any other 4xx, an unusable body
     +-- EmbeddedPostgresError                  (seerrperf.testing) the test server failed
     +-- EmbeddedRedisError                     (seerrperf.testing) the test server failed

Driver and pool errors (``psycopg.OperationalError``,
``psycopg.errors.QueryCanceled``, ``psycopg_pool.PoolTimeout``) pass through
unwrapped, so ``except psycopg.OperationalError`` keeps working in user code.
Errors about input from a peer (a TMDB answer, a request header) are never
configuration errors.

No message raised from here ever contains a password, an API key or a token.
"""

from __future__ import annotations

__all__ = [
    "CacheLoadAbortedError",
    "CacheLoadTimeout",
    "CacheOverloadedError",
    "ConfigurationError",
    "EmbeddedPostgresError",
    "EmbeddedRedisError",
    "HeaderParseError",
    "LockTimeout",
    "SeerrperfError",
    "TmdbAuthError",
    "TmdbError",
    "TmdbNotFound",
    "TmdbRateLimited",
    "TmdbResponseError",
    "TmdbUnavailable",
]


class SeerrperfError(Exception):
    """Root of every error that seerrperf raises itself."""


class ConfigurationError(SeerrperfError, ValueError):
    """A setting or argument is invalid; the message names which one and why."""


class HeaderParseError(SeerrperfError, ValueError):
    """A peer's header breaks its grammar, and strict parsing was asked for.

    Raised only by ``CacheControl.parse(value, strict=True)``; the default,
    lenient reading never raises for what a peer sends. Not a
    :class:`ConfigurationError`: the input came from a peer, not from our
    configuration. The message names the problems, with the value shown
    escaped and shortened.
    """


class LockTimeout(SeerrperfError, TimeoutError):
    """A lock was not acquired within its ``timeout``; the critical section did not run."""


class CacheLoadAbortedError(SeerrperfError):
    """A shared cache load ended without a result: it was cancelled or interrupted.

    Raised to the callers waiting for that load, never to the one whose
    ``BaseException`` (``KeyboardInterrupt``, event loop shutdown) ended it.
    """


class CacheLoadTimeout(SeerrperfError, TimeoutError):
    """A shared cache load did not finish within its ``load_timeout``.

    Raised to every caller waiting for that load (an async load is cancelled
    at the deadline; a sync load keeps running in its thread, which cannot be
    stopped, and its late result is not stored). The key is free at once: the
    next caller starts a new load.
    """


class CacheOverloadedError(SeerrperfError):
    """A cache refused to start a load because ``max_loading`` loads were running.

    Raised at once, without waiting: so many loads at once usually means the
    upstream hangs, and queueing behind it would only tie up more callers.
    Inside a ``stale_if_error`` window the stale entry is served instead.
    """


class TmdbError(SeerrperfError):
    """TMDB could not give an answer.

    Attributes:
        status: The HTTP status, or ``None`` when no response arrived.
        path: The API path asked for (never with credentials).
        retry_after: Seconds after which TMDB may answer again, where known
            (a 429's pause); ``None`` otherwise. Web integrations send it as
            ``Retry-After`` when they answer the outage with 503.
    """

    retry_after: float | None = None

    def __init__(self, message: str, *, status: int | None, path: str) -> None:
        super().__init__(message)
        self.status = status
        self.path = path


class TmdbNotFound(TmdbError):
    """404: the id does not exist (or was deleted); remembered briefly."""


class TmdbAuthError(TmdbError):
    """401/403: the API key or access token is missing, wrong or revoked."""


class TmdbRateLimited(TmdbError):
    """429 after every retry: TMDB kept asking us to slow down."""


class TmdbUnavailable(TmdbError):
    """5xx, a timeout or a connection failure after every retry."""


class TmdbResponseError(TmdbError):
    """Any other 4xx, or a body that is not a JSON object."""


class EmbeddedPostgresError(SeerrperfError):
    """The embedded server could not be set up, started or stopped."""


class EmbeddedRedisError(SeerrperfError):
    """The embedded Valkey server could not be started."""
