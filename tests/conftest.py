"""Shared fixtures. ``postgres_dsn`` comes from seerrperf's own pytest plugin."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from seerrperf.testing import EmbeddedPostgres


@pytest.fixture
def anyio_backend() -> str:
    """Default backend for ``@pytest.mark.anyio`` tests (psycopg needs asyncio)."""
    return "asyncio"


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedPostgres]:
    """A server of the test module's own, for tests that stop, restart or freeze it."""
    try:
        server = EmbeddedPostgres()
    except Exception as exc:  # no embedded binaries on a machine using an external DSN
        if os.environ.get("SEERRPERF_TEST_DSN"):
            pytest.skip(f"needs the embedded extra to control a server: {exc}")
        raise
    with server:
        yield server


@pytest.fixture
def app_name() -> str:
    """A unique application_name so pg_stat_activity counts only this test."""
    return f"t-{uuid.uuid4().hex[:12]}"
