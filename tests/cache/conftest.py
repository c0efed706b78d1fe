"""Fixtures for the cache tests: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

from seerrperf.testing import FakeClock

from ._twins import Api


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The caches work on both of anyio's backends; module-scoped so hypothesis may use it."""
    backend: str = request.param
    return backend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(request: pytest.FixtureRequest) -> Api:
    """The loading API a twin test drives (parametrised by ``twins``)."""
    return Api(request.param)
