"""The growth rule on its own: decisions from given waits, holds and sizes (no server)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from seerrperf._pg.growth import CEILING_MEMORY, PROBE_AFTER, WINDOW, Growth, Sizes

GROW_AFTER = 0.01
SUSTAINED = PROBE_AFTER  # requests have queued without a break for this long
MAX_IDLE = 30.0


def growth(min_size: int = 2, max_size: int = 20, grow_after: float = GROW_AFTER) -> Growth:
    return Growth(min_size, max_size, grow_after, MAX_IDLE)


def settled(g: Growth) -> Sizes:
    """The pool has exactly its limit, every connection open."""
    return Sizes(managed=g.limit, open=g.limit)


def quick(g: Growth, now: float) -> int | None:
    """A beat while requests have queued for long behind quick holders."""
    return g.decide(0.02, "quick", 0.001, settled(g), now=now, queued_for=SUSTAINED)


def history(g: Growth, hold: float, n: int = WINDOW) -> None:
    for _ in range(n):
        g.returned(hold)


def test_starts_at_min_size_and_never_below_one() -> None:
    assert growth().limit == 2
    assert growth(min_size=0).limit == 1
    assert growth(grow_after=0).limit == 20  # the rule off: psycopg_pool grows as it likes


def test_nothing_grows_before_a_request_waited_grow_after() -> None:
    g = growth()
    history(g, 0.001)
    assert g.decide(GROW_AFTER / 2, "a", 1.0, settled(g), now=0.0) is None
    assert g.limit == 2


def test_a_slow_holder_adds_one_connection_at_the_second_beat() -> None:
    g = growth()
    history(g, 0.001)
    assert g.decide(0.02, "slow", 0.02, settled(g), now=0.0) is None  # one beat: maybe a stall
    assert g.decide(0.03, "slow", 0.03, settled(g), now=0.01) == 3
    assert g.grows == 1
    assert "held 30 ms" in g.reason


def test_a_process_stall_is_not_a_slow_holder() -> None:
    # Every holder looked slow once because the process stalled; by the next
    # beat the stalled holder has given its connection back.
    g = growth()
    history(g, 0.001)
    assert g.decide(0.05, "stalled", 0.05, settled(g), now=0.0) is None
    assert g.decide(0.05, "another", 0.011, settled(g), now=0.01) is None
    assert g.limit == 2


def test_a_slow_holder_needs_no_history() -> None:
    # A caller holding the only connection while it asks for a second: nothing
    # was ever returned, and waiting for a return would wait forever.
    g = growth(min_size=1, max_size=2)
    assert g.decide(0.02, "holder", 0.02, settled(g), now=0.0) is None
    assert g.decide(0.03, "holder", 0.03, settled(g), now=0.01) == 2


def test_nothing_grows_while_the_process_itself_is_busy() -> None:
    # Beats running late mean the holders wait for the CPU (a burst of new
    # tasks, a saturated client): more connections cannot fix that.
    g = growth()
    history(g, 0.001)
    late = GROW_AFTER  # each beat a whole grow_after late
    for beat in range(5):
        assert g.decide(0.1, "busy", 0.1, settled(g), now=beat / 100, lag=late) is None
    assert g.limit == 2
    # On time again: the same slow holder counts from the next two beats.
    assert g.decide(0.1, "busy", 0.1, settled(g), now=0.1) is None
    assert g.decide(0.1, "busy", 0.11, settled(g), now=0.11) == 3


def test_one_connection_at_a_time() -> None:
    g = growth()
    history(g, 0.001)
    g.decide(0.02, "slow", 0.02, settled(g), now=0.0)
    assert g.decide(0.03, "slow", 0.03, settled(g), now=0.01) == 3
    opening = Sizes(managed=3, open=2)
    for beat in range(5):
        assert g.decide(1.0, "slow", 1.0, opening, now=0.02 + beat / 100) is None
    assert g.limit == 3


def test_never_past_max_size() -> None:
    g = growth(max_size=3)
    history(g, 0.001)
    for beat in range(20):
        g.decide(1.0, "slow", 1.0, settled(g), now=beat / 100)
    assert g.limit == 3


def test_a_short_burst_of_quick_requests_does_not_probe() -> None:
    # Over before a connection opened during it could pay for its opening.
    g = growth()
    history(g, 0.001)
    for beat in range(10):
        queued = 0.01 * (beat + 1)
        assert g.decide(queued, "quick", 0.001, settled(g), now=queued, queued_for=queued) is None
    assert g.limit == 2


def test_a_probe_that_buys_nothing_sets_a_ceiling() -> None:
    g = growth()
    history(g, 0.001)
    assert quick(g, now=0.0) == 3  # probe: 2 -> 3
    history(g, 0.0015)  # holds rose by 50 %: what a saturated server shows going 2 -> 3
    assert quick(g, now=0.1) is None
    assert "bought nothing" in g.note
    for beat in range(10):  # no probe past 3 while the ceiling is remembered
        assert quick(g, now=0.2 + beat) is None
    assert g.limit == 3
    later = CEILING_MEMORY * MAX_IDLE + 1
    assert quick(g, now=later) == 4


def test_a_probe_that_helps_allows_the_next() -> None:
    g = growth()
    history(g, 0.001)
    assert quick(g, now=0.0) == 3
    history(g, 0.001)  # holds unchanged: the server had room
    assert quick(g, now=0.1) is None  # judged
    assert "helped" in g.note
    assert quick(g, now=0.2) == 4


def test_slow_holders_grow_past_a_probe_ceiling() -> None:
    g = growth()
    history(g, 0.001)
    quick(g, now=0.0)
    history(g, 0.002)
    g.decide(
        0.02, "quick", 0.001, settled(g), queued_for=SUSTAINED, now=0.1
    )  # probe failed: ceiling 2
    g.decide(0.1, "slow", 0.1, settled(g), now=0.2)
    assert g.decide(0.1, "slow", 0.11, settled(g), now=0.21) == 4


def test_a_probe_ends_when_nobody_waits() -> None:
    g = growth()
    history(g, 0.001)
    quick(g, now=0.0)
    assert g.probing
    g.idle()
    assert not g.probing


def test_decay_follows_psycopg_pool_shrinking() -> None:
    g = growth(min_size=2)
    history(g, 0.001)
    g.decide(0.1, "slow", 0.1, settled(g), now=0.0)
    g.decide(0.1, "slow", 0.1, settled(g), now=0.01)
    assert g.limit == 3
    assert g.decay(managed=3) is None
    assert g.decay(managed=2) == 2
    assert g.decay(managed=0) is None  # never below min_size


def test_resize_keeps_the_limit_within_the_new_bounds() -> None:
    g = growth()
    assert g.resize(5, 10) == 5
    assert g.resize(1, 3) == 3
    assert growth(grow_after=0).resize(1, 7) == 7


events = st.lists(
    st.one_of(
        st.tuples(st.just("returned"), st.floats(0, 1)),
        st.tuples(
            st.just("decide"),
            st.floats(0, 1),  # waited
            st.sampled_from(["a", "b", None]),  # holder
            st.floats(0, 1),  # its hold
            st.integers(0, 25),  # managed
            st.integers(0, 25),  # open
        ),
        st.tuples(st.just("decay"), st.integers(0, 25)),
        st.tuples(
            st.just("idle"),
        ),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    min_size=st.integers(0, 5),
    extra=st.integers(0, 10),
    grow_after=st.sampled_from([0.0, 0.001, 0.01, 0.5]),
    script=events,
)
def test_the_limit_stays_in_bounds_and_rises_one_at_a_time(
    min_size: int, extra: int, grow_after: float, script: list[tuple[object, ...]]
) -> None:
    max_size = max(1, min_size + extra)
    g = growth(min_size, max_size, grow_after)
    now = 0.0
    for event in script:
        now += 0.01
        before = g.limit
        if event[0] == "returned":
            g.returned(float(event[1]))  # type: ignore[arg-type]
        elif event[0] == "decide":
            _, waited, holder, hold, managed, opened = event
            sizes = Sizes(managed=int(managed), open=int(opened))  # type: ignore[call-overload]
            new = g.decide(waited, holder, hold, sizes, now)  # type: ignore[arg-type]
            if new is not None:
                assert new == before + 1
                assert sizes.managed >= before
                assert sizes.open >= sizes.managed
                assert waited >= grow_after > 0  # type: ignore[operator]
        elif event[0] == "decay":
            new = g.decay(int(event[1]))  # type: ignore[call-overload]
            assert new is None or new < before
        else:
            g.idle()
        assert max(1, min_size) <= g.limit <= max_size or (grow_after == 0 and g.limit == max_size)
