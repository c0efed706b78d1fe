"""Fixtures of the Redis tests: a backend per test in a namespace of its own, on real Valkey."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from seerrperf import RedisBackend
from seerrperf.testing import EmbeddedRedis

# Generous per-call timeout: a loaded CI machine must not turn a slow answer into a
# fallback in tests that count loader calls. Fault tests pass short ones themselves.
TIMEOUT = 5.0


@pytest.fixture
def namespace() -> str:
    """A namespace of the test's own: no key, generation or channel is shared with another."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(redis_url: str, namespace: str) -> Iterator[RedisBackend]:
    """A sync backend on the session's server."""
    with RedisBackend.from_url(redis_url, namespace=namespace, timeout=TIMEOUT) as made:
        yield made


@pytest.fixture
async def abackend(redis_url: str, namespace: str) -> AsyncIterator[RedisBackend]:
    """A backend used from the test's event loop (closed there)."""
    async with RedisBackend.from_url(redis_url, namespace=namespace, timeout=TIMEOUT) as made:
        yield made


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client, for what the tests do behind the backend's back."""
    with redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def own_redis() -> Iterator[EmbeddedRedis]:
    """A server of the module's own, for tests that freeze, kill or restart it."""
    try:
        server = EmbeddedRedis()
    except Exception as exc:  # no embedded binary on a machine using an external server
        if os.environ.get("SEERRPERF_TEST_REDIS_URL"):
            pytest.skip(f"needs the embedded extra to control a server: {exc}")
        raise
    with server:
        yield server


@pytest.fixture
def running_redis(own_redis: EmbeddedRedis) -> EmbeddedRedis:
    """``own_redis``, running and answering (a test before may have stopped or frozen it)."""
    own_redis.resume()
    own_redis.start()
    return own_redis
