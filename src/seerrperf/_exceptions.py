"""The seerrperf error hierarchy.

::

    SeerrperfError
     +-- ConfigurationError (also ValueError)
     +-- LockTimeout (also TimeoutError)

Driver and pool errors (``psycopg.OperationalError``,
``psycopg.errors.QueryCanceled``, ``psycopg_pool.PoolTimeout``) pass through
unwrapped, so ``except psycopg.OperationalError`` keeps working in user code.

No message raised from here ever contains a password, an API key or a token.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "LockTimeout", "SeerrperfError"]


class SeerrperfError(Exception):
    """Root of every error that seerrperf raises itself."""


class ConfigurationError(SeerrperfError, ValueError):
    """A setting or argument is invalid; the message names which one and why."""


class LockTimeout(SeerrperfError, TimeoutError):
    """A lock was not acquired within its ``timeout``; the critical section did not run."""
