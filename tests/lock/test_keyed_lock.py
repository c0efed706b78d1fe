"""KeyedLock: the thread twin of AsyncLock, on real threads.

Threads cannot run on virtual time, so every wait here is on a condition
with a deadline (a deadlock fails the test after seconds instead of hanging
it), and timeouts that must expire are short ones that nothing can satisfy.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seerrperf import ConfigurationError, KeyedLock, LockStats, LockTimeout, SeerrperfError

DEADLINE = 20.0  # seconds for anything that should happen at once; only a bug waits this long


class Boom(Exception):
    pass


def eventually(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Wait until ``predicate()`` holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a thread is stuck"


def queued(lock: KeyedLock, n: int) -> Callable[[], bool]:
    return lambda: lock.stats().waiting_tasks == n


# --- behaviour -----------------------------------------------------------------------------


def test_one_holder_per_key_and_keys_are_independent() -> None:
    lock = KeyedLock()
    with lock(("movie", 603)) as held:
        assert held is None  # the one call shape: advisory locks give a connection here
        assert lock.locked(("movie", 603))
        assert not lock.locked(("tv", 603))
        with lock(("tv", 603)):
            assert len(lock) == 2
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with lock(("movie", 603), timeout=0):
                    pass
            except LockTimeout as exc:
                errors.append(exc)

        join(start(other))
        assert len(errors) == 1
    assert len(lock) == 0


def test_stats_count_acquisitions_contention_and_timeouts() -> None:
    lock = KeyedLock()
    done: list[str] = []

    def enter(name: str, timeout: float | None) -> None:
        try:
            with lock("k", timeout=timeout):
                done.append(name)
        except LockTimeout:
            done.append(f"{name} timed out")

    with lock("k"):
        waiters = [start(lambda n=n: enter(n, None)) for n in ("a", "b")]
        eventually(queued(lock, 2), "two waiters")
        assert lock.stats().held_keys == 1
        impatient = start(lambda: enter("c", 0.05))
        join(impatient)
    join(*waiters)
    assert sorted(done) == ["a", "b", "c timed out"]
    stats = lock.stats()
    assert stats == LockStats(
        held_keys=0, waiting_tasks=0, acquisitions=3, contended_acquisitions=2, timeouts=1
    )
    assert stats.as_dict()["contended_acquisitions"] == 2
    assert repr(lock) == "<KeyedLock held=0 waiting=0>"


def test_dispatch_runs_under_the_lock_and_returns_the_result() -> None:
    lock = KeyedLock()

    def work(a: int, *, b: int) -> int:
        assert lock.locked("k")
        return a + b

    assert lock.dispatch("k", work, 1, b=2) == 3
    assert len(lock) == 0
    with pytest.raises(ConfigurationError, match="fn must be a function, got int"):
        lock.dispatch("k", 42)  # type: ignore[arg-type]
    assert lock.stats().acquisitions == 1


def test_a_failing_holder_releases_to_the_next_waiter() -> None:
    lock = KeyedLock()
    got: list[str] = []

    def waiter() -> None:
        with lock("k"):
            got.append("waiter")

    threads: list[threading.Thread] = []

    def fail_while_held() -> None:
        with lock("k"):
            threads.append(start(waiter))
            eventually(queued(lock, 1), "the waiter to queue")
            raise Boom

    with pytest.raises(Boom):
        fail_while_held()
    join(*threads)
    assert got == ["waiter"]
    assert len(lock) == 0


def test_reacquiring_a_held_key_raises_instead_of_deadlocking() -> None:
    lock = KeyedLock()
    with lock("k"):
        with pytest.raises(RuntimeError, match="not re-entrant"):
            with lock("k"):
                pass
        with pytest.raises(RuntimeError, match="not re-entrant"):
            lock.dispatch("k", lambda: None)
        assert lock.stats().waiting_tasks == 0
    assert len(lock) == 0


def test_a_thread_started_by_the_holder_waits_instead_of_raising() -> None:
    lock = KeyedLock()
    got: list[str] = []

    def child() -> None:
        with lock("k"):
            got.append("child")

    with lock("k"):
        thread = start(child)
        eventually(queued(lock, 1), "the child to queue")
        got.append("parent")
    join(thread)
    assert got == ["parent", "child"]


def test_one_context_manager_serves_one_block_at_a_time() -> None:
    lock = KeyedLock()
    hold = lock("k")
    with hold:
        with pytest.raises(RuntimeError, match="already in use"):
            hold.__enter__()
    with hold:  # reusable once released
        pass
    assert lock.stats().acquisitions == 2


def test_a_timed_out_waiter_leaves_the_queue() -> None:
    lock = KeyedLock()
    errors: list[tuple[BaseException, float]] = []
    got: list[str] = []

    def impatient() -> None:
        begin = time.monotonic()
        try:
            with lock("k", timeout=0.1):
                got.append("impatient")
        except LockTimeout as exc:
            errors.append((exc, time.monotonic() - begin))

    def patient() -> None:
        with lock("k"):
            got.append("patient")

    with lock("k"):
        first = start(impatient)
        eventually(queued(lock, 1), "the impatient waiter")
        second = start(patient)
        join(first)
        assert lock.stats().waiting_tasks == 1
    join(second)
    [(error, waited)] = errors
    assert waited >= 0.1
    assert "within 0.1 s" in str(error)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, SeerrperfError)
    assert got == ["patient"]
    assert lock.stats().timeouts == 1


def test_timeout_zero_takes_only_a_free_key() -> None:
    lock = KeyedLock()
    with lock("k", timeout=0):
        outcome: list[str] = []

        def try_lock() -> None:
            try:
                with lock("k", timeout=0):
                    outcome.append("got it")
            except LockTimeout as exc:
                outcome.append(str(exc))

        join(start(try_lock))
    assert outcome == ["the key is held and timeout=0 does not wait"]
    assert lock.stats().timeouts == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_a_bad_timeout_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be"):
        KeyedLock()("k", timeout=bad)


def test_an_unhashable_key_is_a_configuration_error_and_changes_nothing() -> None:
    lock = KeyedLock()
    with pytest.raises(ConfigurationError, match="key must be hashable, got list"):
        with lock([1, 2]):
            pass
    assert lock.stats() == LockStats(0, 0, 0, 0, 0)
    with lock("k", timeout=0):
        pass


def test_200_waiters_on_one_key_get_it_in_the_order_they_asked() -> None:
    lock = KeyedLock()
    got: list[int] = []

    def waiter(i: int) -> None:
        with lock("k"):
            got.append(i)

    threads = []
    with lock("k"):
        for i in range(200):
            threads.append(start(lambda i=i: waiter(i)))
            eventually(queued(lock, i + 1), f"waiter {i} to queue")
    join(*threads)
    assert got == list(range(200))
    assert lock.stats().contended_acquisitions == 200


class Key:
    """A key hashed by identity that a weak reference can watch."""


def test_released_keys_are_forgotten() -> None:
    lock = KeyedLock()
    keys = [Key() for _ in range(10_000)]
    for key in keys:
        with lock(key):
            pass
    contended = Key()
    with lock(contended):
        thread = start(lambda key=contended: lock.dispatch(key, lambda: None))
        eventually(queued(lock, 1), "the waiter")
    join(thread)
    refs = [weakref.ref(k) for k in (*keys, contended)]
    del keys, key, contended
    gc.collect()
    assert len(lock) == 0
    assert sum(ref() is not None for ref in refs) == 0


def test_departed_waiters_do_not_pile_up_behind_a_long_holder() -> None:
    lock = KeyedLock()
    traced: list[int] = []

    def impatient() -> None:
        with pytest.raises(LockTimeout):
            with lock("k", timeout=0.001):
                pass

    tracemalloc.start()
    try:
        with lock("k"):
            for round_ in range(30):
                join(*[start(impatient) for _ in range(20)])
                if round_ in (4, 29):
                    gc.collect()
                    traced.append(tracemalloc.get_traced_memory()[0])
            assert lock.stats().waiting_tasks == 0
    finally:
        tracemalloc.stop()
    # 500 departed waiters kept in the queue would hold their tickets and locks.
    assert traced[1] - traced[0] < 64_000
    assert lock.stats().timeouts == 600
    assert len(lock) == 0


# --- a model-based schedule: who holds, who waits, in which order -------------------------


@dataclass
class Actor:
    index: int
    key: int
    timeout: float | None
    fails: bool
    leave: threading.Event = field(default_factory=threading.Event)
    outcome: str | None = None
    thread: threading.Thread | None = None


@dataclass
class World:
    lock: KeyedLock = field(default_factory=KeyedLock)
    changed: threading.Condition = field(default_factory=threading.Condition)
    entered: list[int] = field(default_factory=list)
    inside: Counter[int] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def run(self, actor: Actor) -> None:
        try:
            with self.lock(actor.key, timeout=actor.timeout):
                with self.changed:
                    self.inside[actor.key] += 1
                    if self.inside[actor.key] != 1:
                        self.violations.append(f"two holders of key {actor.key}")
                    self.entered.append(actor.index)
                    self.changed.notify_all()
                if not actor.leave.wait(DEADLINE):
                    self.violations.append(f"actor {actor.index} was never told to leave")
                with self.changed:
                    self.inside[actor.key] -= 1
                if actor.fails:
                    raise Boom
            outcome = "done"
        except LockTimeout:
            outcome = "timeout"
        except Boom:
            outcome = "failed"
        with self.changed:
            actor.outcome = outcome
            self.changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, DEADLINE):
                pytest.fail(f"timed out waiting for {what}")


ASK = st.tuples(
    st.just("ask"),
    st.integers(0, 2),  # key
    st.sampled_from([None, 0, 0.005, 30.0]),  # 0.005 s always expires here: the key is held
    st.booleans(),  # the critical section raises
)
RELEASE = st.tuples(st.just("release"), st.integers(0, 2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ASK, RELEASE), max_size=14))
def test_schedules_keep_one_holder_fifo_order_and_leave_nothing(
    steps: list[tuple[Any, ...]],
) -> None:
    world = World()
    lock = world.lock
    actors: list[Actor] = []
    holder: dict[int, Actor | None] = {0: None, 1: None, 2: None}
    queue: dict[int, list[Actor]] = {0: [], 1: [], 2: []}
    expected = Counter[str]()

    def release(key: int) -> None:
        actor = holder[key]
        if actor is None:
            return
        before = len(world.entered)
        actor.leave.set()
        world.wait_until(lambda: actor.outcome is not None, f"actor {actor.index} to leave")
        expected["failed" if actor.fails else "done"] += 1
        if queue[key]:
            successor = queue[key].pop(0)
            world.wait_until(lambda: len(world.entered) > before, "the hand-off")
            assert world.entered[before] == successor.index  # FIFO: the oldest waiter
            holder[key] = successor
        else:
            holder[key] = None
            assert not lock.locked(key)

    for step in steps:
        if step[0] == "release":
            release(step[1])
            continue
        _, key, timeout, fails = step
        actor = Actor(len(actors), key, timeout, fails)
        actors.append(actor)
        before = len(world.entered)
        waiting = sum(len(q) for q in queue.values())
        actor.thread = start(lambda actor=actor: world.run(actor))
        if holder[key] is None:
            world.wait_until(lambda n=before: len(world.entered) > n, "a free key to be taken")
            assert world.entered[-1] == actor.index
            holder[key] = actor
        elif timeout in (0, 0.005):
            world.wait_until(lambda a=actor: a.outcome is not None, "a wait to expire")
            assert actor.outcome == "timeout"
            expected["timeout"] += 1
        else:
            eventually(queued(lock, waiting + 1), f"actor {actor.index} to queue")
            queue[key].append(actor)
    for key in holder:
        while holder[key] is not None:
            release(key)
    join(*[a.thread for a in actors if a.thread is not None])
    assert world.violations == []
    assert Counter(a.outcome for a in actors) == expected
    stats = lock.stats()
    assert len(lock) == 0
    assert (stats.held_keys, stats.waiting_tasks) == (0, 0)
    assert stats.acquisitions == len(world.entered)
    assert stats.timeouts == expected["timeout"]
    assert stats.contended_acquisitions <= stats.acquisitions


# --- races: timeouts expiring while the key is handed over --------------------------------


@settings(max_examples=8, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, 0, 0.0005, 0.002]), st.booleans()),
        min_size=4,
        max_size=12,
    ),
)
def test_racing_threads_never_share_a_key_and_the_counts_add_up(
    plans: list[tuple[float | None, bool]],
) -> None:
    lock = KeyedLock()
    mutex = threading.Lock()
    inside = [0]
    tally = Counter[str]()
    problems: list[str] = []

    def worker(timeout: float | None, fails: bool) -> None:
        for _ in range(30):
            try:
                with lock("hot", timeout=timeout):
                    with mutex:
                        inside[0] += 1
                        if inside[0] != 1:
                            problems.append("two holders")
                        tally["entered"] += 1
                    time.sleep(0)  # let another thread run inside, if the lock would let it
                    with mutex:
                        inside[0] -= 1
                    if fails:
                        raise Boom
            except LockTimeout:
                with mutex:
                    tally["timeouts"] += 1
            except Boom:
                pass

    join(*[start(lambda p=p: worker(*p)) for p in plans])
    assert problems == []
    stats = lock.stats()
    assert len(lock) == 0
    assert stats.waiting_tasks == 0
    assert stats.acquisitions == tally["entered"]
    assert stats.timeouts == tally["timeouts"]
    assert tally["entered"] + tally["timeouts"] == 30 * len(plans)
    assert stats.contended_acquisitions <= stats.acquisitions
