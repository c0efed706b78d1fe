"""Worker processes of the multi-process Redis tests (each runs in a spawned process).

Every function reports through a ``multiprocessing`` queue: a result, or the
exception that ended it, so the test sees a failure instead of a hang.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import anyio

from seerrperf import Invalidation, RedisBackend

PROCESSES = 4
TASKS = 50
KEYS = 100
LOAD_SECONDS = 0.05


def _count(counter: Synchronized[int]) -> None:
    with counter.get_lock():
        counter.value += 1


def load_keys(
    url: str,
    namespace: str,
    mode: str,
    seed: int,
    start: Barrier,
    loader_calls: Synchronized[int],
    queue: Any,
) -> None:
    """``TASKS`` threads (``mode="threads"``) or asyncio tasks (``"asyncio"``) each ask
    every one of ``KEYS`` keys once, in an order of their own; the loader counts its calls."""
    try:
        with RedisBackend.from_url(url, namespace=namespace, timeout=10.0) as backend:
            tier = backend.tier("tmdb")
            orders = [
                random.Random(seed * 1000 + t).sample(range(KEYS), KEYS) for t in range(TASKS)
            ]
            wrong: list[str] = []

            def check(key: int, value: Any) -> None:
                if value != {"id": key}:
                    wrong.append(f"{key}: {value!r}")

            if mode == "threads":

                def load_sync(key: int) -> dict[str, int]:
                    _count(loader_calls)
                    time.sleep(LOAD_SECONDS)
                    return {"id": key}

                def run_thread(order: list[int]) -> None:
                    for key in order:
                        got = tier.get_or_load(
                            ("movie", key), functools.partial(load_sync, key), ttl=300
                        )
                        check(key, got.value)

                threads = [threading.Thread(target=run_thread, args=(o,)) for o in orders]
                start.wait(60)
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(120)
            else:

                async def load_async(key: int) -> dict[str, int]:
                    _count(loader_calls)
                    await anyio.sleep(LOAD_SECONDS)
                    return {"id": key}

                async def run_task(order: list[int]) -> None:
                    for key in order:
                        got = await tier.aget_or_load(
                            ("movie", key), functools.partial(load_async, key), ttl=300
                        )
                        check(key, got.value)

                async def main() -> None:
                    async with backend:
                        await anyio.to_thread.run_sync(start.wait, 60)
                        async with anyio.create_task_group() as tg:
                            for order in orders:
                                tg.start_soon(run_task, order)

                anyio.run(main)
            queue.put(("done", mode, backend.stats().as_dict(), wrong))
    except BaseException as exc:
        queue.put(("error", mode, repr(exc), []))


def hold_a_lease(url: str, namespace: str, lease_time: float, started: Event, queue: Any) -> None:
    """Win the lease of ``("movie", 603)`` and load forever (until killed)."""
    try:
        with RedisBackend.from_url(
            url, namespace=namespace, timeout=5.0, lease_time=lease_time
        ) as backend:

            def forever() -> str:
                started.set()
                threading.Event().wait(3600)
                return "never"

            backend.tier("tmdb").get_or_load(("movie", 603), forever, ttl=60)
    except BaseException as exc:
        queue.put(repr(exc))


def reserve_starts(
    url: str,
    namespace: str,
    max_rps: float,
    start: Barrier,
    stop: Event,
    limit: int,
    started: Synchronized[int],
    queue: Any,
) -> None:
    """Reserve start slots and wait for them, until ``stop`` or ``limit`` starts.

    Reports ``(call_began, slot)`` per start, in ``time.monotonic()`` seconds
    (system-wide on Linux, so comparable across processes): the slot is the
    reply's arrival plus the wait the limiter gave.
    """
    try:
        with RedisBackend.from_url(url, namespace=namespace, timeout=5.0) as backend:
            limiter = backend.rate_limiter("tmdb", max_rps=max_rps)
            starts: list[tuple[float, float]] = []
            start.wait(60)
            pause = threading.Event()
            while not stop.is_set() and len(starts) < limit:
                began = time.monotonic()
                wait = limiter.reserve()
                slot = time.monotonic() + wait
                if wait > 0:
                    pause.wait(wait)
                starts.append((began, slot))
                _count(started)
            queue.put(("done", starts, backend.stats().as_dict()))
    except BaseException as exc:
        queue.put(("error", repr(exc), {}))


def listen(url: str, namespace: str, ready: Event, queue: Any) -> None:
    """Report every invalidation of cache ``tmdb`` (kind and digests) until killed."""
    try:
        backend = RedisBackend.from_url(url, namespace=namespace, timeout=2.0, retry_interval=0.1)

        def heard(invalidation: Invalidation) -> None:
            queue.put((invalidation.kind, invalidation.digests, time.monotonic()))
            if invalidation.kind == "resync":
                ready.set()

        backend.tier("tmdb").subscribe(heard)
        threading.Event().wait(3600)
    except BaseException as exc:
        queue.put(("error", repr(exc), 0.0))


def refresh_stale(
    url: str,
    namespace: str,
    keys: int,
    start: Barrier,
    refreshes: Synchronized[int],
    queue: Any,
) -> None:
    """8 threads read ``keys`` stale keys with stale-while-revalidate; whoever wins a
    refresh runs it (slowly, so the others read while it runs)."""
    try:
        with RedisBackend.from_url(url, namespace=namespace, timeout=10.0) as backend:
            tier = backend.tier("tmdb")
            sources: list[str] = []

            def refresh(key: int) -> str:
                _count(refreshes)
                time.sleep(0.2)
                return f"new {key}"

            def run() -> None:
                for _ in range(3):
                    for key in range(keys):
                        got = tier.get_or_load(
                            ("movie", key),
                            lambda: "a miss loads",
                            ttl=300,
                            stale_while_revalidate=600,
                        )
                        sources.append(got.source)
                        if got.refresh is not None:
                            tier.refresh(
                                got.refresh,
                                functools.partial(refresh, key),
                                ttl=300,
                                stale_window=600,
                            )

            threads = [threading.Thread(target=run) for _ in range(8)]
            start.wait(60)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            queue.put(("done", sorted(set(sources)), backend.stats().as_dict()))
    except BaseException as exc:
        queue.put(("error", repr(exc), {}))


# --- through NamedCache (CacheManager(shared=backend)) and the TMDB client ---------------


def cache_load_keys(
    url: str,
    namespace: str,
    mode: str,
    seed: int,
    start: Barrier,
    loader_calls: Synchronized[int],
    queue: Any,
    shared: bool,
) -> None:
    """:func:`load_keys` through ``NamedCache.get_or_set`` / ``aget_or_set`` of a
    ``CacheManager(shared=backend)`` (``shared=False``: a plain manager, the control)."""
    from seerrperf import CacheManager

    try:
        with RedisBackend.from_url(url, namespace=namespace, timeout=10.0) as backend:
            caches = CacheManager(shared=backend) if shared else CacheManager()
            cache = caches.get_cache("tmdb")
            orders = [
                random.Random(seed * 1000 + t).sample(range(KEYS), KEYS) for t in range(TASKS)
            ]
            wrong: list[str] = []

            def check(key: int, value: Any) -> None:
                if value != {"id": key}:
                    wrong.append(f"{key}: {value!r}")

            if mode == "threads":

                def load_sync(key: int) -> dict[str, int]:
                    _count(loader_calls)
                    time.sleep(LOAD_SECONDS)
                    return {"id": key}

                def run_thread(order: list[int]) -> None:
                    for key in order:
                        check(
                            key, cache.get_or_set(("movie", key), functools.partial(load_sync, key))
                        )

                threads = [threading.Thread(target=run_thread, args=(o,)) for o in orders]
                start.wait(60)
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(120)
            else:

                async def load_async(key: int) -> dict[str, int]:
                    _count(loader_calls)
                    await anyio.sleep(LOAD_SECONDS)
                    return {"id": key}

                async def run_task(order: list[int]) -> None:
                    for key in order:
                        got = await cache.aget_or_set(
                            ("movie", key), functools.partial(load_async, key)
                        )
                        check(key, got)

                async def main() -> None:
                    async with backend:
                        await anyio.to_thread.run_sync(start.wait, 60)
                        async with anyio.create_task_group() as tg:
                            for order in orders:
                                tg.start_soon(run_task, order)

                anyio.run(main)
            caches.close()
            queue.put(("done", mode, backend.stats().as_dict(), wrong))
    except BaseException as exc:
        queue.put(("error", mode, repr(exc), []))


def watch_a_key(url: str, namespace: str, expected_resyncs: int, ready: Event, queue: Any) -> None:
    """Hold ``("movie", 603)`` in a shared-tier cache; report when it leaves the local tier.

    Reports ``("dropped", time.monotonic())`` as soon as the key is no longer
    held locally (a 0.5 ms poll of the local tier, which costs no round trip),
    then -- once the backend has resynced ``expected_resyncs`` times -- what a
    read answers: ``("read", value)``.
    """
    from seerrperf import CacheManager

    try:
        backend = RedisBackend.from_url(url, namespace=namespace, timeout=2.0, retry_interval=0.1)
        cache = CacheManager(shared=backend).get_cache("tmdb")
        key = ("movie", 603)
        deadline = time.monotonic() + 60
        tick = threading.Event()
        while not (backend.stats().subscribed and backend.stats().resyncs >= 1):
            if time.monotonic() > deadline:
                raise TimeoutError("never subscribed")
            tick.wait(0.005)
        assert cache.get_or_set(key, lambda: "old") in ("old", "new")
        ready.set()
        while key in cache:
            if time.monotonic() > deadline:
                raise TimeoutError("the key never left the local tier")
            tick.wait(0.0005)
        queue.put(("dropped", time.monotonic()))
        while backend.stats().resyncs < expected_resyncs or not backend.stats().subscribed:
            if time.monotonic() > deadline:
                raise TimeoutError(f"resyncs: {backend.stats().resyncs}")
            tick.wait(0.005)
        queue.put(("read", cache.get(key, "missing")))
        threading.Event().wait(3600)
    except BaseException as exc:
        queue.put(("error", repr(exc)))


def tmdb_requests(
    url: str,
    namespace: str,
    base_url: str,
    max_rps: float,
    seed: int,
    count: int,
    start: Barrier,
    queue: Any,
) -> None:
    """``count`` TMDB calls of distinct ids through one fleet limiter; report each send.

    Reports ``("done", [(sent_at, status), ...], stats)``: when each HTTP
    request left this process (``time.monotonic()``, system-wide) and its status.
    """
    import httpx

    from seerrperf import NamedCache, TmdbClient

    try:
        sent: list[float] = []
        answered: list[tuple[float, int]] = []

        def on_request(request: httpx.Request) -> None:
            sent.append(time.monotonic())

        def on_response(response: httpx.Response) -> None:
            answered.append((sent[len(answered)], response.status_code))

        with (
            RedisBackend.from_url(url, namespace=namespace, timeout=5.0) as backend,
            httpx.Client(
                event_hooks={"request": [on_request], "response": [on_response]}, timeout=30
            ) as http,
            TmdbClient(
                api_key="k",
                base_url=base_url,
                http_client=http,
                cache=NamedCache("tmdb"),
                rate_limiter=backend.rate_limiter("tmdb", max_rps=max_rps),
                timeout=60,
                max_rps=None,
            ) as tmdb,
        ):
            start.wait(60)
            for n in range(count):
                tmdb.get_movie(seed * 1000 + n + 1)
            queue.put(("done", answered, backend.stats().as_dict()))
    except BaseException as exc:
        queue.put(("error", repr(exc), {}))


def load_through_outage(
    url: str,
    namespace: str,
    stop: Event,
    fallbacks: Synchronized[int],
    last_shared: Synchronized[float],
    queue: Any,
) -> None:
    """Keep reading through a shared-tier cache until ``stop``; count what escapes.

    Publishes this backend's ``fallbacks`` and the time of the last call that
    the shared tier answered without falling back (``last_shared``).
    """
    from seerrperf import CacheManager

    try:
        with RedisBackend.from_url(
            url, namespace=namespace, timeout=0.2, retry_interval=0.2
        ) as backend:
            cache = CacheManager(shared=backend).get_cache("tmdb", ttl=0.05)
            rng = random.Random()
            failed = 0
            tick = threading.Event()
            while not stop.is_set():
                key = rng.randrange(50)
                before = backend.stats().fallbacks
                try:
                    if cache.get_or_set(("movie", key), functools.partial(dict, id=key)) != {
                        "id": key
                    }:
                        failed += 1
                except Exception:
                    failed += 1
                stats = backend.stats()
                fallbacks.value = stats.fallbacks
                if stats.fallbacks == before and stats.available:
                    last_shared.value = time.monotonic()
                tick.wait(0.002)
            queue.put(("done", failed, backend.stats().as_dict()))
    except BaseException as exc:
        queue.put(("error", repr(exc), {}))
