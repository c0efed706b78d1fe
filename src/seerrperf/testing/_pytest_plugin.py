"""pytest plugin (entry point ``seerrperf``): a real PostgreSQL for your tests.

Fixture ``postgres_dsn`` (session scope): the DSN in ``$SEERRPERF_TEST_DSN``
when set, otherwise a throwaway embedded server started once per session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

TEST_DSN_ENV = "SEERRPERF_TEST_DSN"


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
