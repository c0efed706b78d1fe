"""Test support for apps built on seerrperf (public API).

- :class:`EmbeddedPostgres` / :func:`embedded_postgres`: a throwaway
  PostgreSQL server from the ``embedded`` extra.
- The pytest plugin (loaded automatically) provides a session-scoped
  ``postgres_dsn`` fixture that honours ``$SEERRPERF_TEST_DSN``.
"""

from __future__ import annotations

from ._embedded import EmbeddedPostgres, EmbeddedPostgresError, embedded_postgres

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "embedded_postgres"]
