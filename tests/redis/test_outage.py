"""Redis is never a hard dependency: frozen, killed, full or refusing, no call fails because of
it; every call falls back, the outage is logged once and counted, and Redis is used again
as soon as it answers."""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from typing import Any

import pytest
import redis

from seerrperf import RedisBackend
from seerrperf.testing import EmbeddedRedis

from ._support import wait_until

KEY = ("movie", 603)


class Traffic:
    """Threads that keep using the shared tier and the limiter, recording what escapes."""

    def __init__(self, backend: RedisBackend, threads: int = 6) -> None:
        self.backend = backend
        self.escaped: list[BaseException] = []
        self.done = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(threads)
        ]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        tier = self.backend.tier("tmdb")
        limiter = self.backend.rate_limiter("tmdb", max_rps=1000)
        while not self._stop.is_set():
            key = ("movie", rng.randrange(20))
            try:
                op = rng.random()
                if op < 0.6:
                    got = tier.get_or_load(key, functools.partial(dict, id=key[1]), ttl=60)
                    assert got.value == {"id": key[1]}
                elif op < 0.75:
                    tier.set(key, {"id": key[1]}, 60)
                elif op < 0.85:
                    tier.delete(key)
                elif op < 0.9:
                    tier.lookup(key, lease=rng.random() < 0.5)
                else:
                    limiter.reserve()
            except BaseException as exc:
                with self._lock:
                    self.escaped.append(exc)
            with self._lock:
                self.done += 1

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def more(self, count: int) -> None:
        """Wait until ``count`` more operations are done."""
        target = self.done + count
        wait_until(lambda: self.done >= target, timeout=30, what=f"{count} more operations")


@pytest.mark.slow
def test_frozen_then_killed_then_back(
    running_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="seerrperf.redis")
    with (
        RedisBackend.from_url(
            running_redis.url, namespace="outage", timeout=0.2, retry_interval=0.2
        ) as backend,
        Traffic(backend) as traffic,
    ):
        traffic.more(200)
        assert backend.stats().fallbacks == 0
        running_redis.pause()  # SIGSTOP mid-operation: calls time out
        try:
            traffic.more(200)
            assert backend.stats().fallbacks > 0
            assert backend.available is False
        finally:
            running_redis.stop()  # then kill it: connections refused
        fallbacks = backend.stats().fallbacks
        traffic.more(200)
        assert backend.stats().fallbacks > fallbacks
        running_redis.start()
        back = time.monotonic()
        wait_until(
            lambda: backend.tier("tmdb").lookup(KEY).state != "fallback",
            timeout=2.0,
            what="the shared tier is used again",
        )
        assert time.monotonic() - back <= 2.0
        wait_until(lambda: backend.stats().subscribed, timeout=5.0, what="subscribed again")
        traffic.more(200)
        stats = backend.stats()
    assert traffic.escaped == []
    assert stats.errors > 0
    assert stats.available is True
    # Logged once when Redis went away, once when it came back; never per call.
    assert caplog.text.count("Redis is unavailable") == 1
    assert caplog.text.count("Redis answers again after") == 1


def test_while_redis_is_down_every_operation_falls_back_at_once(
    running_redis: EmbeddedRedis,
) -> None:
    with RedisBackend.from_url(
        running_redis.url, namespace="down", timeout=2.0, retry_interval=60
    ) as backend:
        tier = backend.tier("tmdb")
        tier.set(KEY, "shared", 60)
        running_redis.stop()
        try:
            assert tier.lookup(KEY).state == "fallback"  # the failure that opens the breaker
            began = time.monotonic()
            assert tier.lookup(KEY, lease=True).state == "fallback"
            got = tier.get_or_load(KEY, lambda: "local", ttl=60)
            assert (got.value, got.source, got.stored) == ("local", "fallback", False)
            assert tier.set(KEY, "v", 60) == "fallback"
            assert tier.delete(KEY) is False
            assert tier.clear() is False
            assert backend.flush() is False
            assert backend.rate_limiter("tmdb", max_rps=10).reserve() == 0.0
            assert time.monotonic() - began < 1.0  # no call waited for a (2 s) timeout
        finally:
            running_redis.start()


def test_invalidations_made_during_an_outage_are_applied_when_redis_is_back(
    running_redis: EmbeddedRedis,
) -> None:
    # A network outage for this process only: Redis keeps its data.
    with (
        RedisBackend.from_url(
            running_redis.url, namespace="replay", timeout=0.2, retry_interval=0.1
        ) as backend,
        RedisBackend.from_url(running_redis.url, namespace="replay") as other,
    ):
        tier, theirs = backend.tier("tmdb"), other.tier("tmdb")
        for n in range(3):
            theirs.set(("movie", n), "old", 60)
        theirs.set(KEY, "old", 60)
        backend.tier("tvdb").set(KEY, "old", 60)
        running_redis.pause()
        try:
            assert tier.delete(("movie", 0)) is False
            assert tier.set(("movie", 1), "new, local only", 60) == "fallback"
            assert backend.tier("tvdb").clear() is False
        finally:
            running_redis.resume()
        # Before anything else is read, the backlog is replayed.
        wait_until(lambda: tier.lookup(KEY).state != "fallback", timeout=5.0)
        assert theirs.lookup(("movie", 0)).state == "missing"
        assert theirs.lookup(("movie", 1)).state == "missing"  # deleted, not the old value
        assert theirs.lookup(("movie", 2)).value == "old"
        assert other.tier("tvdb").lookup(KEY).state == "missing"


def test_a_full_redis_refuses_writes_without_failing_anything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="seerrperf.redis")
    with (
        EmbeddedRedis(settings={"maxmemory": "4mb", "maxmemory-policy": "noeviction"}) as server,
        RedisBackend.from_url(server.url, timeout=2.0) as backend,
        RedisBackend.from_url(server.url, timeout=2.0) as other,
        redis.Redis.from_url(server.url) as raw,
    ):
        tier = backend.tier("tmdb")
        assert tier.set(KEY, "before", 60) == "stored"
        outcomes: list[Any] = []
        for n in range(200):
            outcomes.append(tier.set(("big", n), "x" * 100_000, 60))
            if outcomes[-1] == "fallback":
                break
        assert outcomes[-1] == "fallback"  # full: refused, and Redis did not grow past it
        assert raw.info("memory")["used_memory"] < 5 * 1024 * 1024
        assert tier.set(KEY, "after", 60) == "fallback"
        # Reads work, and nobody reads the value the refused set replaced: it was deleted.
        assert other.tier("tmdb").lookup(KEY).state == "missing"
        assert other.tier("tmdb").lookup(("big", 0)).state == "fresh"
        got = tier.get_or_load(("k",), lambda: "local", ttl=60)  # no room for a lease
        assert (got.value, got.source) == ("local", "fallback")
        assert tier.delete(("big", 0)) is True  # deleting frees memory, and works
        assert backend.available is True  # refused, not down: the breaker stays closed
        raw.config_set("maxmemory", "0")  # room again
        assert tier.set(("k",), "v", 60) == "stored"
    assert caplog.text.count("Redis refused a command") == 1
