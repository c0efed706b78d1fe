"""pytest plugin (entry point ``seerrperf``): a real PostgreSQL and Valkey for your tests.

Fixtures (session scope):

- ``postgres_dsn``: the DSN in ``$SEERRPERF_TEST_DSN`` when set, otherwise a
  throwaway embedded PostgreSQL started once per session.
- ``redis_url``: the URL in ``$SEERRPERF_TEST_REDIS_URL`` when set, otherwise
  a throwaway embedded Valkey started once per session.

The servers' modules are imported only when a test asks for a fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

TEST_DSN_ENV = "SEERRPERF_TEST_DSN"
TEST_REDIS_URL_ENV = "SEERRPERF_TEST_REDIS_URL"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL server for the whole test session."""
    external = os.environ.get(TEST_DSN_ENV)
    if external:
        yield external
        return
    from ._embedded import EmbeddedPostgres

    with EmbeddedPostgres() as server:
        yield server.dsn


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis or Valkey server for the whole test session."""
    external = os.environ.get(TEST_REDIS_URL_ENV)
    if external:
        yield external
        return
    from ._embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url
