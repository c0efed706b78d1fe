"""Test support for apps built on seerrperf (public API).

- :class:`EmbeddedPostgres` / :func:`embedded_postgres`: a throwaway
  PostgreSQL server from the ``embedded`` extra.
- :class:`EmbeddedRedis` / :func:`embedded_redis`: a throwaway Valkey
  server from the same extra.
- The pytest plugin (loaded automatically) provides session-scoped
  ``postgres_dsn`` and ``redis_url`` fixtures that honour
  ``$SEERRPERF_TEST_DSN`` and ``$SEERRPERF_TEST_REDIS_URL``.
- :class:`FakeClock`: a clock that moves only when told to, for every
  ``clock=`` argument.
- :class:`FakeTmdb`: a deterministic TMDB API stand-in with latency, error,
  429 and outage knobs, as an httpx transport or a real local server.
"""

from __future__ import annotations

from seerrperf._errors import EmbeddedPostgresError, EmbeddedRedisError

from ._clock import FakeClock
from ._embedded import EmbeddedPostgres, embedded_postgres
from ._embedded_redis import EmbeddedRedis, embedded_redis
from ._fake_tmdb import FakeTmdb, FakeTmdbStats

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "FakeClock",
    "FakeTmdb",
    "FakeTmdbStats",
    "embedded_postgres",
    "embedded_redis",
]
