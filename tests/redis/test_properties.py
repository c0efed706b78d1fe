"""Property-based tests of the fleet single-flight on real Valkey: any mix of concurrent loads,
failures, cancellations at arbitrary points and invalidations leaves no lease behind, runs
every loader it counts, and never hands a caller another key's value."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seerrperf import RedisBackend, SharedTier

KEYS = 3


@dataclass(frozen=True)
class Op:
    kind: str  # "load", "fail", "hang", "delete", "set", "clear"
    key: int
    delay: float  # seconds before it starts
    cancel_after: float | None  # seconds after which the caller is cancelled (async only)


ops = st.builds(
    Op,
    kind=st.sampled_from(["load", "load", "load", "fail", "hang", "delete", "set", "clear"]),
    key=st.integers(0, KEYS - 1),
    delay=st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02]),
    cancel_after=st.none() | st.sampled_from([0.0, 0.001, 0.005, 0.02, 0.05]),
)

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _no_lease_left(tier: SharedTier) -> None:
    for key in range(KEYS):
        found = tier.lookup(("k", key), lease=True)
        if found.state == "missing":
            assert found.lease is not None, f"key {key}: a lease was left behind"
            tier.release(found.lease)


@SETTINGS
@given(st.lists(ops, min_size=1, max_size=14))
def test_async_loads_cancellations_and_invalidations(redis_url: str, plan: list[Op]) -> None:
    namespace = f"p{uuid.uuid4().hex[:12]}"
    loader_runs = 0
    escaped: list[BaseException] = []

    async def main() -> RedisBackend:
        nonlocal loader_runs
        backend = RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0)
        tier = backend.tier("t")

        async def run(op: Op) -> None:
            nonlocal loader_runs
            key = ("k", op.key)

            async def loader() -> dict[str, int]:
                nonlocal loader_runs
                loader_runs += 1
                await anyio.sleep(0.002)
                if op.kind == "fail":
                    raise ValueError("loader failed")
                if op.kind == "hang":
                    await anyio.sleep(30)
                return {"key": op.key}

            await anyio.sleep(op.delay)
            if op.kind == "delete":
                await tier.adelete(key)
            elif op.kind == "set":
                await tier.aset(key, {"key": op.key}, 60)
            elif op.kind == "clear":
                await tier.aclear()
            else:
                got = await tier.aget_or_load(key, loader, ttl=60)
                assert got.value == {"key": op.key}

        async def guarded(op: Op) -> None:
            deadline = op.cancel_after if op.cancel_after is not None else 20.0
            if op.kind == "hang" and op.cancel_after is None:
                deadline = 0.05  # a hung load is always cancelled in the end
            try:
                with anyio.move_on_after(deadline):
                    await run(op)
            except ValueError as exc:
                if str(exc) != "loader failed":
                    escaped.append(exc)
            except Exception as exc:
                escaped.append(exc)

        async with anyio.create_task_group() as tg:
            for op in plan:
                tg.start_soon(guarded, op)
        await backend.aclose()
        return backend

    backend = anyio.run(main)
    assert escaped == []
    with RedisBackend.from_url(redis_url, namespace=namespace) as checker:
        _no_lease_left(checker.tier("t"))
    stats = backend.stats()
    assert stats.loads == loader_runs
    assert stats.fallbacks == 0


@SETTINGS
@given(st.lists(ops.filter(lambda op: op.kind != "hang"), min_size=1, max_size=12))
def test_threads_loads_failures_and_invalidations(redis_url: str, plan: list[Op]) -> None:
    namespace = f"p{uuid.uuid4().hex[:12]}"
    runs: list[int] = []
    escaped: list[BaseException] = []
    with RedisBackend.from_url(redis_url, namespace=namespace, timeout=5.0) as backend:
        tier = backend.tier("t")
        pause = threading.Event()

        def run(op: Op) -> None:
            key = ("k", op.key)

            def loader() -> dict[str, int]:
                runs.append(op.key)
                pause.wait(0.002)
                if op.kind == "fail":
                    raise ValueError("loader failed")
                return {"key": op.key}

            pause.wait(op.delay)
            try:
                if op.kind == "delete":
                    tier.delete(key)
                elif op.kind == "set":
                    tier.set(key, {"key": op.key}, 60)
                elif op.kind == "clear":
                    tier.clear()
                else:
                    got = tier.get_or_load(key, loader, ttl=60)
                    assert got.value == {"key": op.key}
            except ValueError as exc:
                if str(exc) != "loader failed":
                    escaped.append(exc)
            except BaseException as exc:
                escaped.append(exc)

        threads = [threading.Thread(target=run, args=(op,)) for op in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert escaped == []
        _no_lease_left(tier)
        stats = backend.stats()
        assert stats.loads == len(runs)
        assert stats.fallbacks == 0
        # Single-flight: concurrent successful loads of one key never overlap in one
        # generation -- at most one load per key per "load" op, never more.
        for key in range(KEYS):
            asked = sum(1 for op in plan if op.key == key and op.kind in ("load", "fail"))
            assert runs.count(key) <= asked


@pytest.mark.anyio
async def test_a_waiter_cancelled_while_waiting_leaves_the_leader_alone(
    abackend: RedisBackend,
) -> None:
    tier = abackend.tier("t")
    started, finish = anyio.Event(), anyio.Event()

    async def leader_load() -> str:
        started.set()
        await finish.wait()
        return "done"

    results: list[Any] = []

    async def lead() -> None:
        results.append(await tier.aget_or_load(("k", 0), leader_load, ttl=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)
        await started.wait()
        with anyio.move_on_after(0.05):
            await tier.aget_or_load(("k", 0), leader_load, ttl=60)  # waits, then is cancelled
        finish.set()
    assert results[0].value == "done"
    assert results[0].stored is True
