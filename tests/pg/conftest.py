"""Fixtures for the PostgreSQL tests: a private PgBouncer in front of the test server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support import PgBouncer, require_program

BOUNCER_USERS = ("postgres", "seerrperf_bounced")
"""Users the PgBouncer fixture accepts; tests create the roles other than postgres."""


@pytest.fixture(scope="module")
def pgbouncer(postgres_dsn: str) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling (4 server connections per user) for this module.

    Skipped when Debian's ``pgbouncer`` is not installed (a failure in CI).
    """
    binary = require_program("pgbouncer", "pgbouncer")
    with PgBouncer(binary, postgres_dsn, users=BOUNCER_USERS) as bouncer:
        yield bouncer
