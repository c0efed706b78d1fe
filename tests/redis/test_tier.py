"""SharedTier against real Valkey, in one process: values, freshness, leases, round trips."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from seerrperf import ConfigurationError, Lease, RedisBackend, SharedLoad, SharedLookup
from seerrperf.testing import EmbeddedRedis

from ._support import wait_until

KEY = ("movie", 603)


def round_trips(backend: RedisBackend) -> int:
    return backend.stats().round_trips


def test_set_then_lookup_is_fresh_with_the_servers_ttl(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    assert tier.lookup(KEY) == SharedLookup("missing")
    assert tier.set(KEY, {"title": "The Matrix", "year": 1999}, 60) == "stored"
    found = tier.lookup(KEY)
    assert found.state == "fresh"
    assert found.value == {"title": "The Matrix", "year": 1999}
    assert 59 < found.ttl <= 60
    assert found.lease is None


def test_values_round_trip_falsy_and_nested(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    values: list[Any] = [None, 0, "", [], {}, False, [1, [2, {"a": None}]], "ünï"]
    for index, value in enumerate(values):
        assert tier.set(("v", index), value, 60) == "stored"
        found = tier.lookup(("v", index))
        assert (found.state, found.value, type(found.value)) == ("fresh", value, type(value))


def test_keys_are_per_cache_and_per_namespace(backend: RedisBackend, redis_url: str) -> None:
    backend.tier("tmdb").set(KEY, "tmdb", 60)
    assert backend.tier("tvdb").lookup(KEY).state == "missing"
    with RedisBackend.from_url(redis_url, namespace=backend.namespace + "-other") as other:
        assert other.tier("tmdb").lookup(KEY).state == "missing"


def test_redis_keys_hold_the_digest_never_the_key(backend: RedisBackend, raw: redis.Redis) -> None:
    tier = backend.tier("tmdb")
    tier.set(("user", "alice@example.com"), 1, 60)
    names = [name.decode() for name in raw.scan_iter(f"{backend.namespace}:*")]
    digest = tier.digest(("user", "alice@example.com"))
    assert digest is not None
    assert f"{backend.namespace}:v1:e:tmdb:{digest}" in names
    assert not any("alice" in name for name in names)


def test_a_value_json_would_change_stays_local_and_deletes_the_shared_one(
    backend: RedisBackend,
) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, "old", 60)
    for changed in [(1, 2), {1: "a"}, {"s": {1, 2}}, float("nan")]:
        assert tier.set(KEY, changed, 60) == "local_only"
        assert tier.lookup(KEY).state == "missing"  # nobody reads the older value
    assert backend.stats().local_only == 4


def test_a_value_larger_than_the_limit_stays_local(redis_url: str, namespace: str) -> None:
    with RedisBackend.from_url(redis_url, namespace=namespace, max_value_bytes=100) as backend:
        tier = backend.tier("tmdb")
        assert tier.set(KEY, "x" * 90, 60) == "stored"
        assert tier.set(("big",), "x" * 200, 60) == "local_only"
        assert backend.stats().local_only == 1


def test_an_entry_larger_than_the_readers_limit_is_missing(
    backend: RedisBackend, redis_url: str
) -> None:
    backend.tier("tmdb").set(KEY, "x" * 500, 60)
    with RedisBackend.from_url(
        redis_url, namespace=backend.namespace, max_value_bytes=100
    ) as small:
        assert small.tier("tmdb").lookup(KEY).state == "missing"


def test_an_entry_of_another_serializer_is_missing(backend: RedisBackend, redis_url: str) -> None:
    backend.tier("tmdb").set(KEY, "json", 60)
    with RedisBackend.from_url(
        redis_url, namespace=backend.namespace, serializer="pickle"
    ) as pickled:
        tier = pickled.tier("tmdb")
        assert tier.lookup(KEY).state == "missing"
        assert tier.set(KEY, (1, {2}), 60) == "stored"  # pickle keeps tuples and sets
        assert tier.lookup(KEY).value == (1, {2})
    assert backend.tier("tmdb").lookup(KEY).state == "missing"


def test_ttl_zero_deletes(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, 1, 60)
    assert tier.set(KEY, 2, 0) == "stored"
    assert tier.lookup(KEY).state == "missing"


def test_expired_entries_are_stale_inside_the_window_then_missing(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, "v", 60, stale_window=600)
    # Age the entry on the server: its fresh-until goes 30 s into the past.
    name = f"{backend.namespace}:v1:e:tmdb:{tier.digest(KEY)}"
    fresh_until = int(raw.hget(name, "f") or 0)
    raw.hset(name, "f", fresh_until - 90_000)
    assert tier.lookup(KEY).state == "missing"  # no window asked: not served
    stale = tier.lookup(KEY, stale_while_revalidate=60)
    assert stale.state == "stale"
    assert stale.value == "v"
    assert -31 < stale.ttl < -29
    assert tier.lookup(KEY, stale_while_revalidate=10).state == "missing"
    assert backend.stats().stale_hits == 1


def test_delete_and_delete_many(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    keys = [("movie", n) for n in range(600)]  # more than one script call's worth
    for key in keys[:3]:
        tier.set(key, 1, 60)
    assert tier.delete(keys[0]) is True
    assert tier.lookup(keys[0]).state == "missing"
    assert tier.lookup(keys[1]).state == "fresh"
    sent = backend.stats().invalidations_sent
    assert tier.delete_many(keys) is True
    assert all(tier.lookup(key).state == "missing" for key in keys[:3])
    assert backend.stats().invalidations_sent == sent + 3  # 256 keys per message


def test_clear_is_one_round_trip_and_hides_every_entry(backend: RedisBackend) -> None:
    tmdb, tvdb = backend.tier("tmdb"), backend.tier("tvdb")
    for n in range(50):
        tmdb.set(("movie", n), n, 60)
    tvdb.set(KEY, "kept", 60)
    tvdb.clear()  # first use of the script (a server learns our scripts on first use)
    tvdb.set(KEY, "kept", 60)
    before = round_trips(backend)
    assert tmdb.clear() is True
    assert round_trips(backend) == before + 1
    assert all(tmdb.lookup(("movie", n)).state == "missing" for n in range(50))
    assert tvdb.lookup(KEY).value == "kept"
    tmdb.set(("movie", 1), "new", 60)  # the cache works after a clear
    assert tmdb.lookup(("movie", 1)).value == "new"


def test_flush_hides_every_cache_of_the_namespace_only(
    backend: RedisBackend, redis_url: str
) -> None:
    backend.tier("tmdb").set(KEY, 1, 60)
    backend.tier("tvdb").set(KEY, 1, 60)
    with RedisBackend.from_url(redis_url, namespace=backend.namespace + "-x") as other:
        other.tier("tmdb").set(KEY, "other", 60)
        assert backend.flush() is True
        assert backend.tier("tmdb").lookup(KEY).state == "missing"
        assert backend.tier("tvdb").lookup(KEY).state == "missing"
        assert other.tier("tmdb").lookup(KEY).value == "other"


def test_a_lost_generation_counter_never_revives_old_entries(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, "before clear", 60)
    tier.clear()
    raw.delete(f"{backend.namespace}:v1:gen:tmdb")  # evicted, say
    assert tier.lookup(KEY).state == "missing"
    tier.set(("other",), 1, 60)  # recreates the counter
    assert tier.lookup(KEY).state == "missing"


# -- leases -------------------------------------------------------------------------


def test_the_first_miss_wins_the_lease_the_next_is_told_to_wait(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    first = tier.lookup(KEY, lease=True)
    assert first.state == "missing"
    assert isinstance(first.lease, Lease)
    second = tier.lookup(KEY, lease=True)
    assert second.state == "missing"
    assert second.lease is None
    assert 0 < second.wait <= backend.lease_time
    assert tier.fill(first.lease, "loaded", 60) == "stored"
    found = tier.lookup(KEY, lease=True)
    assert (found.state, found.value, found.lease) == ("fresh", "loaded", None)


@pytest.mark.parametrize("invalidate", ["delete", "set", "clear", "flush"])
def test_an_invalidation_during_a_load_wins_over_its_result(
    backend: RedisBackend, invalidate: str
) -> None:
    tier = backend.tier("tmdb")
    lease = tier.lookup(KEY, lease=True).lease
    assert lease is not None
    if invalidate == "delete":
        tier.delete(KEY)
    elif invalidate == "set":
        tier.set(KEY, "explicit", 60)
    elif invalidate == "clear":
        tier.clear()
    else:
        backend.flush()
    assert tier.fill(lease, "loaded before the invalidation", 60) == "lost"
    found = tier.lookup(KEY)
    assert found.value == ("explicit" if invalidate == "set" else None)
    assert backend.stats().leases_lost == 1
    # The lease is gone too: the next miss loads again at once.
    if invalidate != "set":
        assert tier.lookup(KEY, lease=True).lease is not None


def test_release_lets_the_next_caller_lead(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    lease = tier.lookup(KEY, lease=True).lease
    assert lease is not None
    tier.release(lease)
    assert tier.lookup(KEY, lease=True).lease is not None


def test_fill_with_an_unserializable_value_releases_the_lease(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")
    lease = tier.lookup(KEY, lease=True).lease
    assert lease is not None
    assert tier.fill(lease, object(), 60) == "local_only"
    assert tier.lookup(KEY, lease=True).lease is not None


def test_a_lease_of_another_cache_is_refused(backend: RedisBackend) -> None:
    lease = backend.tier("tmdb").lookup(KEY, lease=True).lease
    assert lease is not None
    with pytest.raises(ConfigurationError, match="lease of cache 'tvdb'"):
        backend.tier("tvdb").fill(lease, 1, 60)
    with pytest.raises(ConfigurationError, match="lease must be a Lease"):
        backend.tier("tmdb").release("not a lease")  # type: ignore[arg-type]


# -- get_or_load and round trips -----------------------------------------------------


@pytest.fixture
def quiet(redis_url: str, namespace: str) -> Iterator[RedisBackend]:
    """A backend whose lease renewals (every lease_time / 3) never run during a test:
    its round trips are the test's own."""
    with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0, lease_time=600) as made:
        yield made


def test_a_shared_hit_costs_one_round_trip_a_miss_two(quiet: RedisBackend) -> None:
    backend = quiet
    tier = backend.tier("tmdb")
    tier.lookup(("warm", "up"))  # the scripts are loaded on first use
    tier.set(("warm", "up"), 1, 60)
    before = round_trips(backend)
    loaded = tier.get_or_load(KEY, lambda: "v", ttl=60)
    assert loaded == SharedLoad("v", "loader", 60.0, stored=True)
    assert round_trips(backend) - before == 2  # lookup+lease, fill
    before = round_trips(backend)
    hit = tier.get_or_load(KEY, lambda: pytest.fail("no load on a hit"), ttl=60)
    assert (hit.value, hit.source) == ("v", "shared")
    assert round_trips(backend) - before == 1


def test_a_waiter_is_woken_by_the_fill_and_reads_it(quiet: RedisBackend) -> None:
    backend = quiet
    tier = backend.tier("tmdb")
    tier.lookup(("warm", "up"))  # starts the subscriber, whose first resync wakes every waiter
    wait_until(lambda: backend.stats().subscribed, what="subscribed")
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("slow")
        started.set()
        assert release.wait(10)
        return "from the leader"

    results: list[SharedLoad] = []
    leader = threading.Thread(target=lambda: results.append(tier.get_or_load(KEY, slow, ttl=60)))
    leader.start()
    assert started.wait(10)
    before = round_trips(backend)
    waiter = threading.Thread(
        target=lambda: results.append(tier.get_or_load(KEY, lambda: "never", ttl=60))
    )
    waiter.start()
    wait_until(lambda: backend.stats().lease_waits == 1, what="the waiter waits")
    release.set()
    leader.join(10)
    waiter.join(10)
    assert calls == ["slow"]
    assert sorted((r.value, r.source) for r in results) == [
        ("from the leader", "loader"),
        ("from the leader", "shared"),
    ]
    # The waiter: a lookup that says "wait", then the one that reads (plus the leader's fill).
    assert round_trips(backend) - before == 3
    assert backend.stats().lease_waits == 1
    assert backend.stats().takeovers == 0


def test_a_failed_load_raises_and_releases_the_lease(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")

    def boom() -> str:
        raise ValueError("upstream down")

    with pytest.raises(ValueError, match="upstream down"):
        tier.get_or_load(KEY, boom, ttl=60)
    assert tier.lookup(KEY, lease=True).lease is not None


def test_stale_if_error_serves_the_stale_value_when_the_load_fails(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, "stale", 60, stale_window=600)
    name = f"{backend.namespace}:v1:e:tmdb:{tier.digest(KEY)}"
    raw.hset(name, "f", int(raw.hget(name, "f") or 0) - 120_000)

    def boom() -> str:
        raise ValueError("upstream down")

    got = tier.get_or_load(KEY, boom, ttl=60, stale_if_error=300)
    assert (got.value, got.source) == ("stale", "stale")
    with pytest.raises(ValueError, match="upstream down"):
        tier.get_or_load(KEY, boom, ttl=60, stale_if_error=30)


def test_stale_while_revalidate_hands_out_one_refresh(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    tier = backend.tier("tmdb")
    tier.set(KEY, "old", 60, stale_window=600)
    name = f"{backend.namespace}:v1:e:tmdb:{tier.digest(KEY)}"
    raw.hset(name, "f", int(raw.hget(name, "f") or 0) - 61_000)
    first = tier.get_or_load(
        KEY, lambda: pytest.fail("served stale"), ttl=60, stale_while_revalidate=60
    )
    second = tier.get_or_load(
        KEY, lambda: pytest.fail("served stale"), ttl=60, stale_while_revalidate=60
    )
    assert (first.value, first.source, second.value, second.source) == (
        "old",
        "stale",
        "old",
        "stale",
    )
    assert first.refresh is not None
    assert second.refresh is None  # the fleet's one refresh is running
    assert tier.refresh(first.refresh, lambda: "new", ttl=60, stale_window=600) == "stored"
    assert tier.lookup(KEY).value == "new"


def test_get_or_load_refuses_an_async_loader_and_bad_arguments(backend: RedisBackend) -> None:
    tier = backend.tier("tmdb")

    async def coroutine() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="aget_or_load"):
        tier.get_or_load(KEY, coroutine, ttl=60)
    assert tier.lookup(KEY, lease=True).lease is not None  # released
    with pytest.raises(ConfigurationError, match="loader"):
        tier.get_or_load(("k",), "not callable", ttl=60)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        tier.get_or_load(("k",), lambda: 1, ttl=-1)


@pytest.mark.parametrize("bad", [1.5, [1], {"a": 1}, ("movie", 1.0), frozenset({1}), object()])
def test_keys_without_a_canonical_encoding_cannot_be_shared(
    backend: RedisBackend, bad: Any
) -> None:
    tier = backend.tier("tmdb")
    assert tier.digest(bad) is None
    with pytest.raises(ConfigurationError, match="to be shared"):
        tier.lookup(bad)
    with pytest.raises(ConfigurationError, match="to be shared"):
        tier.set(bad, 1, 60)


# -- async twins --------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_twins(abackend: RedisBackend) -> None:
    tier = abackend.tier("tmdb")
    assert await tier.aset(KEY, [1, 2], 60) == "stored"
    assert (await tier.alookup(KEY)).value == [1, 2]
    assert await tier.adelete(KEY) is True
    assert (await tier.alookup(KEY)).state == "missing"

    async def load() -> str:
        return "loaded"

    got = await tier.aget_or_load(KEY, load, ttl=60)
    assert (got.value, got.source, got.stored) == ("loaded", "loader", True)
    assert (await tier.aget_or_load(KEY, load, ttl=60)).source == "shared"
    assert await tier.aclear() is True
    assert await tier.adelete_many([KEY]) is True
    lease = (await tier.alookup(KEY, lease=True)).lease
    assert lease is not None
    assert await tier.afill(lease, "x", 60) == "stored"
    lease = (await tier.alookup(("other",), lease=True)).lease
    assert lease is not None
    await tier.arelease(lease)
    assert await abackend.aflush() is True
    assert (await tier.alookup(KEY)).state == "missing"


@pytest.mark.anyio
async def test_sync_and_async_share_one_key_space(abackend: RedisBackend, redis_url: str) -> None:
    with RedisBackend.from_url(redis_url, namespace=abackend.namespace) as sync:
        sync.tier("tmdb").set(KEY, "from sync", 60)
        assert (await abackend.tier("tmdb").alookup(KEY)).value == "from sync"
        await abackend.tier("tmdb").aset(KEY, "from async", 60)
        assert sync.tier("tmdb").lookup(KEY).value == "from async"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_get_or_load_on_both_anyio_backends(
    redis_url: str, namespace: str, anyio_backend: str
) -> None:
    async with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as backend:
        tier = backend.tier("tmdb")
        calls = 0

        async def load() -> str:
            nonlocal calls
            calls += 1
            return anyio_backend

        import anyio

        results: list[SharedLoad] = []
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(lambda: _append(results, tier.aget_or_load(KEY, load, ttl=60)))
        assert calls == 1
        assert {r.value for r in results} == {anyio_backend}


async def _append(results: list[SharedLoad], pending: Any) -> None:
    results.append(await pending)


@pytest.mark.anyio
async def test_cancelling_a_load_releases_its_lease(abackend: RedisBackend) -> None:
    import anyio

    tier = abackend.tier("tmdb")
    started = anyio.Event()

    async def forever() -> str:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: tier.aget_or_load(KEY, forever, ttl=60))
        await started.wait()
        tg.cancel_scope.cancel()
    assert (await tier.alookup(KEY, lease=True)).lease is not None


@pytest.mark.anyio
@pytest.mark.parametrize("during", ["lookup", "load", "fill"])
async def test_native_asyncio_cancellation_never_strands_a_lease(
    running_redis: EmbeddedRedis, namespace: str, during: str
) -> None:
    # task.cancel() -- asyncio.timeout, a client gone in Starlette -- which anyio's shields
    # cannot stop. CLIENT PAUSE holds the lookup or the fill on the server, so the caller
    # is cancelled after the command was sent and before its answer is read.
    import asyncio

    with redis.Redis.from_url(running_redis.url) as raw:
        async with RedisBackend.from_url(
            running_redis.url, namespace=namespace, timeout=5.0, lease_time=30
        ) as backend:
            tier = backend.tier("tmdb")
            await tier.alookup(("warm", "up"))  # scripts loaded, connection made
            loading = asyncio.Event()

            async def load() -> str:
                loading.set()
                if during == "fill":
                    raw.client_pause(300)
                else:
                    await asyncio.sleep(10)
                return "v"

            if during == "lookup":
                raw.client_pause(300)
            task = asyncio.ensure_future(tier.aget_or_load(KEY, load, ttl=60))
            if during == "lookup":
                await asyncio.sleep(0.05)
            else:
                await asyncio.wait_for(loading.wait(), 10)
                await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Well before the 30 s lease would expire, the key can be loaded again (or,
            # after a fill that landed anyway, read).
            deadline = time.monotonic() + 5
            while True:
                found = await tier.alookup(KEY, lease=True)
                if found.state == "fresh" or found.lease is not None:
                    break
                assert time.monotonic() < deadline, f"a lease was stranded: {found}"
                await asyncio.sleep(0.01)
            assert found.state == ("fresh" if during == "fill" else "missing")
