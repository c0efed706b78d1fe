"""Fixtures for the Flask integration: a FakeTmdb on a socket, apps on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seerrperf.testing import FakeTmdb

TOKEN = "flask-tmdb-token"


@pytest.fixture(scope="module")
def fake_tmdb() -> Iterator[tuple[FakeTmdb, str]]:
    """A FakeTmdb served from a thread of its own (the sync client needs a real socket)."""
    fake = FakeTmdb(access_token=TOKEN)
    with fake.serve_in_thread() as base_url:
        yield fake, base_url
