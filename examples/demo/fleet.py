"""The fleet section: four worker processes asking TMDB for the same titles.

Two builds side by side, each four real processes (``multiprocessing``,
spawn) of concurrent asyncio tasks that look titles up through an
``AsyncTmdbClient`` on FakeTmdb (a real socket, 20 ms latency):

- **per process** (what every worker had before the shared tier): each
  process has its own cache and its own limiter at ``max_rps``;
- **shared tier**: ``CacheManager(shared=RedisBackend)`` beneath each
  process's cache and one ``backend.rate_limiter("tmdb", max_rps=...)`` for
  the fleet, on an embedded Valkey server.

It reports what ``benchmarks/bench_fleet.py`` measures at length: upstream
calls against the distinct ids asked, and the busiest second of TMDB traffic
against ``max_rps``.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any, Literal

import anyio
import httpx

from seerrperf import AsyncTmdbClient, CacheManager, ConfigurationError, RedisBackend
from seerrperf.testing import EmbeddedRedis, FakeTmdb

from .report import format_table

__all__ = ["FleetPlan", "FleetResult", "busiest_second", "fleet_comparison", "zipf_ids"]

Build = Literal["per process", "shared tier"]
BUILDS: tuple[Build, ...] = ("per process", "shared tier")
_WAIT = 120.0  # seconds any step of the section may take before it is called failed


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """The fleet's load: ``processes`` x ``tasks`` concurrent lookups, Zipf over ``ids`` titles."""

    processes: int = 4
    tasks: int = 8
    lookups: int = 120  # per process
    ids: int = 40
    max_rps: float = 20.0
    latency: float = 0.02

    @classmethod
    def quick(cls) -> FleetPlan:
        """A shorter load for CI and the test suite."""
        return cls(lookups=60, ids=20)


@dataclass(frozen=True, slots=True)
class FleetResult:
    """What one build did: upstream calls, the ids asked, the busiest second, failures."""

    build: Build
    upstream_calls: int
    distinct_ids: int
    busiest_second: int
    elapsed_s: float
    errors: int


def zipf_ids(seed: int, plan: FleetPlan) -> list[int]:
    """The ids one process asks for, in order: a few titles are asked for most."""
    rng = random.Random(seed)
    population = list(range(1, plan.ids + 1))
    rng.shuffle(population)
    weights = [1 / rank**1.1 for rank in range(1, plan.ids + 1)]
    return rng.choices(population, weights=weights, k=plan.lookups)


def busiest_second(times: Sequence[float]) -> int:
    """The most events inside any window of one second."""
    ordered = sorted(times)
    most = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _worker(
    build: Build,
    redis_url: str,
    namespace: str,
    base_url: str,
    plan: FleetPlan,
    seed: int,
    start: Barrier,
    results: Any,
) -> None:
    """One worker process: report ``(sent_at times, errors)`` or the exception that ended it."""
    try:
        results.put(
            ("done", anyio.run(_lookups, build, redis_url, namespace, base_url, plan, seed, start))
        )
    except BaseException as exc:  # reported, so the parent sees a failure, not a hang
        results.put(("error", f"{type(exc).__name__}: {exc}"))


async def _lookups(
    build: Build,
    redis_url: str,
    namespace: str,
    base_url: str,
    plan: FleetPlan,
    seed: int,
    start: Barrier,
) -> tuple[list[float], int]:
    sent: list[float] = []

    async def on_request(request: httpx.Request) -> None:
        sent.append(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process

    backend = None
    if build == "shared tier":
        backend = RedisBackend.from_url(redis_url, namespace=namespace, timeout=2.0)
    manager = CacheManager(shared=backend)
    limiter = None if backend is None else backend.rate_limiter("tmdb", max_rps=plan.max_rps)
    errors = 0
    ids = zipf_ids(seed, plan)
    async with (
        httpx.AsyncClient(event_hooks={"request": [on_request]}, timeout=30.0) as http,
        AsyncTmdbClient(
            api_key="demo",
            base_url=base_url,
            http_client=http,
            cache=manager.get_cache("tmdb"),
            max_rps=None if limiter is not None else plan.max_rps,
            rate_limiter=limiter,
            timeout=60.0,
        ) as tmdb,
    ):
        await anyio.to_thread.run_sync(start.wait, _WAIT)

        async def lookups(share: list[int]) -> None:
            nonlocal errors
            for movie_id in share:
                try:
                    await tmdb.get_movie(movie_id)
                except Exception:
                    errors += 1

        async with anyio.create_task_group() as tg:
            for task in range(plan.tasks):
                tg.start_soon(lookups, ids[task :: plan.tasks])
    manager.close()
    if backend is not None:
        await backend.aclose()
    return sent, errors


def _run_build(
    build: Build, redis_url: str, base_url: str, fake: FakeTmdb, plan: FleetPlan
) -> FleetResult:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(plan.processes + 1)
    results = context.Queue()
    namespace = f"demo-{secrets.token_hex(4)}"
    processes = [
        context.Process(
            target=_worker,
            args=(build, redis_url, namespace, base_url, plan, seed, start, results),
            daemon=True,
        )
        for seed in range(plan.processes)
    ]
    fake.reset_counters()
    for process in processes:
        process.start()
    try:
        start.wait(_WAIT)
        began = time.perf_counter()
        sent: list[float] = []
        errors = 0
        for _ in processes:
            try:
                kind, payload = results.get(timeout=_WAIT)
            except queue_module.Empty:
                raise RuntimeError(
                    f"{build}: a worker process did not answer in {_WAIT:.0f} s"
                ) from None
            if kind == "error":
                raise RuntimeError(f"{build}: a worker process failed: {payload}")
            times, failed = payload
            sent.extend(times)
            errors += failed
        elapsed = time.perf_counter() - began
    finally:
        for process in processes:
            process.join(_WAIT)
            if process.is_alive():
                process.kill()
    asked = {movie_id for seed in range(plan.processes) for movie_id in zipf_ids(seed, plan)}
    return FleetResult(
        build=build,
        upstream_calls=fake.stats().total_requests,
        distinct_ids=len(asked),
        busiest_second=busiest_second(sent),
        elapsed_s=elapsed,
        errors=errors,
    )


def fleet_comparison(plan: FleetPlan, redis_url: str | None = None) -> list[FleetResult]:
    """Run both builds on ``redis_url`` (or an embedded Valkey) and FakeTmdb; one result each."""
    fake = FakeTmdb(latency=plan.latency, api_key="demo")
    with fake.serve_in_thread() as base_url:
        if redis_url is not None:
            return [_run_build(build, redis_url, base_url, fake, plan) for build in BUILDS]
        with EmbeddedRedis() as server:
            return [_run_build(build, server.url, base_url, fake, plan) for build in BUILDS]


def fleet_section(quick: bool, say: Callable[[str], None]) -> int:
    """Print the fleet section; return 1 when the shared tier missed its two goals."""
    plan = FleetPlan.quick() if quick else FleetPlan()
    say(
        f"-- 4. A fleet of {plan.processes} worker processes: per-process caches vs the shared tier"
    )
    say(
        f"   {plan.processes} processes x {plan.tasks} tasks, {plan.lookups} Zipf lookups each "
        f"over {plan.ids} titles, TMDB latency {plan.latency * 1000:.0f} ms, "
        f"max_rps={plan.max_rps:g}"
    )
    try:
        results = fleet_comparison(plan)
    except ConfigurationError as exc:  # no valkey-server binary: the message names the extra
        say(f"   skipped: {exc}")
        return 0
    except (RuntimeError, OSError) as exc:
        say(f"   FAILED: {type(exc).__name__}: {exc}")
        return 1
    say(
        format_table(
            [
                "build",
                "upstream calls",
                "distinct ids",
                "busiest 1 s",
                "max_rps",
                "time s",
                "errors",
            ],
            [
                [
                    r.build,
                    r.upstream_calls,
                    r.distinct_ids,
                    r.busiest_second,
                    f"{plan.max_rps:g}",
                    r.elapsed_s,
                    r.errors,
                ]
                for r in results
            ],
        )
    )
    local, shared = results
    say(
        f"   shared tier: {shared.upstream_calls} upstream calls for {shared.distinct_ids} titles "
        f"(per process: {local.upstream_calls}, "
        f"{local.upstream_calls / max(1, shared.upstream_calls):.1f}x); "
        f"busiest second {shared.busiest_second} requests at max_rps={plan.max_rps:g} "
        f"(per process: {local.busiest_second})."
    )
    ok = (
        shared.errors == 0
        and shared.upstream_calls <= shared.distinct_ids
        and shared.busiest_second <= plan.max_rps
    )
    if not ok:
        say("   FAILED: the shared tier made more upstream calls than titles, or exceeded max_rps.")
    return 0 if ok else 1
