"""The seerrperf error hierarchy, in one place.

::

    SeerrperfError
     +-- ConfigurationError (also ValueError)   a bad argument or setting, named
     +-- HeaderParseError (also ValueError)     a peer's header refused by a strict parser
     +-- LockTimeout (also TimeoutError)        a lock not acquired in time
     +-- LockLost                               an advisory lock's transaction did not commit
     +-- CacheLoadAbortedError                  a shared cache load ended without a result
     +-- CacheLoadTimeout (also TimeoutError)   a shared cache load ran past its load_timeout
     +-- CacheOverloadedError                   a cache load refused: max_loading loads running
     +-- QueryTimeout (also psycopg.OperationalError, TimeoutError)
     |                                          no answer within a pool's query_timeout
     +-- PoolConfigurationError (also psycopg.OperationalError)
     |                                          the server refuses how the pool connects
     +-- PoolForkedError (also RuntimeError)    a pool opened before a fork, used in the child
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
unwrapped, so ``except psycopg.OperationalError`` keeps working in user code;
the pool errors seerrperf raises itself in their place subclass
``psycopg.OperationalError`` for the same reason.
Errors about input from a peer (a TMDB answer, a request header) are never
configuration errors.

No message raised from here ever contains a password, an API key or a token.
"""

from __future__ import annotations

import psycopg

__all__ = [
    "CacheLoadAbortedError",
    "CacheLoadTimeout",
    "CacheOverloadedError",
    "ConfigurationError",
    "EmbeddedPostgresError",
    "EmbeddedRedisError",
    "HeaderParseError",
    "LockLost",
    "LockTimeout",
    "PoolConfigurationError",
    "PoolForkedError",
    "QueryTimeout",
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


class LockLost(SeerrperfError):
    """An advisory lock's block ended normally, but its transaction did not commit.

    The lock lives in the transaction: when the session dies (a terminated
    backend, a dropped network, a server restart) the server releases it at
    once, and another process may take the key while this block still runs;
    when a statement fails and the block catches the error, the transaction
    is aborted and everything it wrote is rolled back. Either way the block's
    work did not happen, so leaving it must not look like success.

    Raised by :class:`~seerrperf.PgAdvisoryLock` and
    :class:`~seerrperf.AsyncPgAdvisoryLock` on leaving a block that did not
    raise; an exception raised by the block itself propagates unchanged.
    The driver's error, if any, is the ``__cause__``.

    Attributes:
        committed: ``False`` when the transaction certainly did not commit;
            ``None`` when the connection was lost during ``COMMIT``, so the
            outcome is unknown (the server may have committed before the
            answer was lost).
    """

    def __init__(self, message: str, *, committed: bool | None = False) -> None:
        super().__init__(message)
        self.committed = committed


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


class QueryTimeout(SeerrperfError, psycopg.OperationalError, TimeoutError):
    """The database did not answer a command within the pool's ``query_timeout``.

    The client-side deadline behind the server's ``statement_timeout``: it
    fires when the server cannot answer at all (frozen, unreachable). The
    connection was closed; the pool replaces it. The command may or may not
    have run on the server: a ``COMMIT`` that timed out is of unknown outcome.
    """


class PoolConfigurationError(SeerrperfError, psycopg.OperationalError):
    """The server refuses the pool's connections because of how the pool connects.

    For example PgBouncer rejecting the startup ``options`` that carry
    ``statement_timeout`` (``pgbouncer=False`` in front of PgBouncer). Raised
    by a checkout instead of ``psycopg_pool.PoolTimeout``, within the checkout
    timeout; the message names the server's reason and the fix. It does not
    go away by retrying: the configuration must change.
    """


class PoolForkedError(SeerrperfError, RuntimeError):
    """A pool opened in one process was used in a child forked from it.

    The child's copy of the pool holds the parent's sockets: using them would
    interleave two processes' traffic on one session. Create and open pools
    in each worker process (after the fork); a pool created but not opened
    before the fork can be opened in the child.
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
