"""RedisBackend: construction, secrets, the import boundary, fork safety, stats, life cycle."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
from typing import Any

import pytest

from seerrperf import ConfigurationError, RedisBackend, RedisStats
from seerrperf.testing import EmbeddedRedis
from tests._support import SENTINEL

from ._support import wait_until

KEY = ("movie", 603)


def test_importing_seerrperf_does_not_import_redis() -> None:
    code = (
        "import sys, seerrperf\n"
        "assert seerrperf.RedisBackend and seerrperf.check_redis_health\n"
        "loaded = sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespace": ""}, "namespace must be a non-empty printable string"),
        ({"timeout": 0}, "timeout must be finite and > 0"),
        ({"timeout": 120}, "timeout must be at most 60"),
        ({"retry_interval": -1}, "retry_interval must be finite"),
        ({"lease_time": 0.01}, "lease_time must be at least 0.1"),
        ({"lease_wait": float("inf")}, "lease_wait must be finite"),
        ({"serializer": "yaml"}, "serializer must be"),
        ({"max_value_bytes": 0}, "max_value_bytes must be >= 1"),
        ({"expected_workers": 0}, "expected_workers must be >= 1"),
        ({"clock": 3}, "clock must be a clock"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str, redis_url: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisBackend.from_url(redis_url, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SENTINEL}@localhost:6379",
        f"{SENTINEL}",
        f"postgres://:{SENTINEL}@db/app",
    ],
)
def test_a_url_that_is_not_redis_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisBackend.from_url(url)
    assert SENTINEL not in str(caught.value)
    assert "redis://" in str(caught.value)


def test_a_url_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="url must be a string"):
        RedisBackend.from_url(b"redis://localhost")  # type: ignore[arg-type]


def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    with EmbeddedRedis(password=SENTINEL) as server:
        url = server.url
        assert SENTINEL in url
        caplog.set_level(logging.DEBUG, logger="seerrperf")
        with RedisBackend.from_url(url, timeout=0.5, retry_interval=0.1) as backend:
            assert SENTINEL not in repr(backend)
            assert "***" in repr(backend)
            tier = backend.tier("tmdb")
            assert SENTINEL not in repr(tier)
            assert tier.set(KEY, "v", 60) == "stored"  # the password works
            assert tier.lookup(KEY).value == "v"
            server.stop()  # an outage: logged, with the error
            assert tier.lookup(KEY).state == "fallback"
            assert SENTINEL not in str(backend.stats().as_dict())
        # A wrong password: refused, reported, never shown.
        wrong = url.replace(SENTINEL, SENTINEL + "x")
        server.start()
        with RedisBackend.from_url(wrong, timeout=0.5) as refused:
            assert refused.tier("tmdb").lookup(KEY).state == "fallback"
            assert SENTINEL not in repr(refused)
        # The password in the query string, and as a bare user-info.
        for variant in (
            f"redis://127.0.0.1:{server.port}/0?password={SENTINEL}",
            f"redis://{SENTINEL}@127.0.0.1:{server.port}/0",
        ):
            with RedisBackend.from_url(variant) as other:
                assert SENTINEL not in repr(other)
    assert "unavailable" in caplog.text
    assert SENTINEL not in caplog.text


def test_stats_start_at_zero_and_are_json_ready(backend: RedisBackend) -> None:
    stats = backend.stats()
    assert isinstance(stats, RedisStats)
    assert stats.available is True
    assert stats.round_trips == stats.errors == stats.fallbacks == 0
    as_dict = stats.as_dict()
    assert as_dict["namespace"] == backend.namespace
    assert set(as_dict) >= {
        "shared_hits",
        "shared_misses",
        "stale_hits",
        "round_trips",
        "errors",
        "fallbacks",
        "lease_waits",
        "takeovers",
        "invalidations_sent",
        "invalidations_received",
        "limiter_waits",
        "local_only",
        "resyncs",
    }


def test_a_closed_backend_falls_back(redis_url: str, namespace: str) -> None:
    backend = RedisBackend.from_url(redis_url, namespace=namespace)
    backend.tier("tmdb").set(KEY, 1, 60)
    backend.close()
    backend.close()  # idempotent
    assert backend.available is False
    assert backend.tier("tmdb").lookup(KEY).state == "fallback"
    assert backend.tier("tmdb").set(KEY, 2, 60) == "fallback"


def test_a_server_that_is_down_at_start_only_means_fallbacks() -> None:
    server = EmbeddedRedis()  # made, never started: nothing listens on its port
    try:
        with RedisBackend.from_url(server.url, timeout=0.2) as backend:
            tier = backend.tier("tmdb")
            assert tier.lookup(KEY).state == "fallback"
            assert tier.get_or_load(KEY, lambda: "local", ttl=60).source == "fallback"
            assert backend.stats().available is False
    finally:
        server.close()


# -- invalidations between two backends (two identities; real processes: test_fleet) --------


def test_listeners_hear_other_backends_and_never_their_own(
    backend: RedisBackend, redis_url: str
) -> None:
    heard: list[Any] = []
    subscription = backend.tier("tmdb").subscribe(heard.append)
    wait_until(lambda: backend.stats().subscribed, what="subscribed")
    wait_until(lambda: [i.kind for i in heard] == ["resync"], what="the first resync")
    heard.clear()
    backend.tier("tmdb").set(KEY, "own", 60)  # its own: not an invalidation for it
    with RedisBackend.from_url(redis_url, namespace=backend.namespace) as other:
        tier = other.tier("tmdb")
        tier.set(KEY, "theirs", 60)
        tier.delete_many([KEY, ("movie", 1)])
        tier.clear()
        other.tier("tvdb").clear()  # another cache: not for this listener
        other.flush()
        wait_until(lambda: len(heard) == 4, what="four invalidations")
    digest = backend.tier("tmdb").digest(KEY)
    assert [(i.kind, i.cache) for i in heard] == [
        ("keys", "tmdb"),
        ("keys", "tmdb"),
        ("clear", "tmdb"),
        ("flush", None),
    ]
    assert heard[0].digests == (digest,)
    assert set(heard[1].digests) == {digest, backend.tier("tmdb").digest(("movie", 1))}
    assert backend.stats().invalidations_received == 5  # the tvdb clear arrived too
    subscription.close()
    with RedisBackend.from_url(redis_url, namespace=backend.namespace) as other:
        other.tier("tmdb").set(KEY, "after close", 60)
        other.flush()
        wait_until(lambda: backend.stats().invalidations_received == 7)
    assert len(heard) == 4


def test_a_listener_that_raises_is_logged_once_and_kept(
    backend: RedisBackend, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken(invalidation: Any) -> None:
        calls.append(invalidation.kind)
        raise RuntimeError("listener bug")

    backend.tier("tmdb").subscribe(broken)
    wait_until(lambda: calls == ["resync"])
    with RedisBackend.from_url(redis_url, namespace=backend.namespace) as other:
        for n in range(3):
            other.tier("tmdb").delete(("movie", n))
        wait_until(lambda: len(calls) == 4)
    assert caplog.text.count("listener of cache 'tmdb' raised") == 1


# -- fork ----------------------------------------------------------------------------


def _child(backend: RedisBackend, parent_source: str, queue: Any) -> None:
    try:
        stats = backend.stats()
        tier = backend.tier("tmdb")
        assert tier.lookup(KEY).value == "from the parent"
        tier.set(KEY, "from the child", 60)
        queue.put((backend.source_id, stats.round_trips, parent_source))
    except BaseException as exc:
        queue.put(exc)
    finally:
        backend.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_fresh_connections_and_its_own_identity(
    backend: RedisBackend,
) -> None:
    heard: list[Any] = []
    tier = backend.tier("tmdb")
    tier.subscribe(heard.append)
    tier.set(KEY, "from the parent", 60)  # the parent has live connections and a thread
    wait_until(lambda: backend.stats().subscribed)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(backend, backend.source_id, queue))
    child.start()
    result = queue.get(timeout=30)
    child.join(30)
    assert not isinstance(result, BaseException), result
    child_source, child_round_trips, parent_source = result
    assert child_source != parent_source == backend.source_id
    assert child_round_trips == 0  # the child's counters start afresh
    wait_until(lambda: any(i.kind == "keys" for i in heard), what="the child's invalidation")
    assert tier.lookup(KEY).value == "from the child"  # the parent's connections still work
