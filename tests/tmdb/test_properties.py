"""Property tests: the deadline always holds, and cancelled callers leave nothing behind."""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seerrperf import AsyncTmdbClient, NamedCache, TmdbError
from seerrperf._tmdb.transport import AsyncTransport, Raise, Retry, Return, Send
from seerrperf.testing import FakeClock

from ._upstream import Upstream

# One attempt's outcome: a status (0: a transport error), a Retry-After, how long it takes.
outcomes = st.tuples(
    st.sampled_from([0, 200, 404, 400, 429, 500, 503]),
    st.one_of(st.none(), st.sampled_from(["0", "1", "3", "20", "\xb2", "soon"])),
    st.floats(0, 4),
)


@settings(max_examples=200, deadline=None)
@given(
    timeout=st.floats(0.5, 15),
    max_retries=st.integers(0, 6),
    max_rps=st.one_of(st.none(), st.sampled_from([0.5, 2.0, 50.0])),
    busy=st.integers(0, 5),
    script=st.lists(outcomes, min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
)
def test_a_get_ends_within_its_timeout_whatever_the_upstream_does(
    timeout: float,
    max_retries: int,
    max_rps: float | None,
    busy: int,
    script: list[tuple[int, str | None, float]],
    seed: int,
) -> None:
    """Drive one Exchange as the transports do, on a fake clock: the waits and the
    attempts (each given what is left, as the I/O side does) never pass the deadline."""
    clock = FakeClock(1000)
    transport = AsyncTransport(
        api_key="key",
        access_token=None,
        http_client=Upstream().http(),
        clock=clock,
        timeout=timeout,
        max_retries=max_retries,
        max_rps=max_rps,
        rng=random.Random(seed),
    )
    for _ in range(busy):  # other requests took the next slots of the limiter
        transport.throttle.reserve()
    exchange = transport.exchange("/movie/1", {})
    start = clock()
    decision: Any = exchange.next()
    attempts = 0
    request = httpx.Request("GET", exchange.url)
    while not isinstance(decision, Return | Raise):
        if isinstance(decision, Retry):
            clock.advance(decision.delay)
            decision = exchange.next()
            continue
        assert isinstance(decision, Send)
        clock.advance(decision.wait)
        assert clock() - start < timeout  # a wait past the deadline is never begun
        exchange.begin()
        status, retry_after, took = script[min(attempts, len(script) - 1)]
        attempts += 1
        if took >= exchange.remaining():  # the I/O side's bound: what is left
            clock.advance(exchange.remaining())
            decision = exchange.timed_out()
            continue
        clock.advance(took)
        if status == 0:
            decision = exchange.failed(httpx.ConnectError("refused", request=request))
        else:
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            body = b'{"id": 1}' if status == 200 else b'{"status_message": "x"}'
            decision = exchange.answered(status, headers, body)
    assert clock() - start <= timeout + 1e-9
    assert attempts <= max_retries + 1
    assert transport.upstream_calls == attempts
    if isinstance(decision, Raise):
        assert isinstance(decision.error, TmdbError)
        assert transport.errors == 1
        # The last retry decided may never be sent: the limiter's slot came too late.
        assert max(attempts - 1, 0) <= transport.retries <= attempts
    else:
        assert decision.value == {"id": 1}
        assert transport.errors == 0
        assert transport.retries == attempts - 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    callers=st.lists(
        st.tuples(st.integers(1, 3), st.one_of(st.none(), st.integers(0, 6))),
        min_size=1,
        max_size=12,
    ),
    statuses=st.lists(st.sampled_from([200, 200, 404, 503]), min_size=1, max_size=8),
    delays=st.lists(st.integers(0, 4), min_size=1, max_size=8),
)
def test_callers_cancelled_at_any_point_leave_no_load_behind(
    callers: list[tuple[int, int | None]], statuses: list[int], delays: list[int]
) -> None:
    """Callers share loads; some are cancelled after N scheduling points. Every
    other caller gets an answer or a TmdbError, and no load is left running."""
    answered = iter(range(10_000))

    async def respond(request: httpx.Request) -> httpx.Response:
        n = next(answered)
        for _ in range(delays[n % len(delays)]):
            await anyio.lowlevel.checkpoint()
        status = statuses[n % len(statuses)]
        if status == 200:
            return Upstream.movie(request)
        return httpx.Response(status)

    async def main() -> None:
        clock = FakeClock(1000)
        cache = NamedCache("tmdb", clock=clock)

        async def sleep(seconds: float) -> None:
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        tmdb = AsyncTmdbClient(
            api_key="key",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(respond)),
            cache=cache,
            clock=clock,
            sleep=sleep,
            max_retries=1,
        )
        results: list[object] = []

        async def caller(movie_id: int, cancel_after: int | None) -> None:
            with anyio.CancelScope() as scope:
                if cancel_after is not None:

                    async def cancel_later() -> None:
                        for _ in range(cancel_after):
                            await anyio.lowlevel.checkpoint()
                        scope.cancel()

                    tg.start_soon(cancel_later)
                try:
                    results.append(await tmdb.get_movie(movie_id))
                except TmdbError as exc:
                    results.append(exc)
            if scope.cancelled_caught:
                results.append("cancelled")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for movie_id, cancel_after in callers:
                    tg.start_soon(caller, movie_id, cancel_after)
            await anyio.wait_all_tasks_blocked()
        assert len(results) == len(callers)
        assert cache.stats().loading == 0  # every shared load ran to its end
        assert tmdb.stats().requests == len(callers)
        await tmdb.aclose()

    anyio.run(main)
