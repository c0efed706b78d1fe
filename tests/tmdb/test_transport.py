"""One GET to TMDB: the pure decisions (credentials, throttle, exchange), then the I/O."""

from __future__ import annotations

import gc
import logging
import random
import threading
from typing import Any

import anyio
import httpx
import pytest

from seerrperf import (
    ConfigurationError,
    TmdbAuthError,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
)
from seerrperf._tmdb.policy import backoff_delay
from seerrperf._tmdb.transport import (
    AsyncTransport,
    BaseTransport,
    Credentials,
    Raise,
    Retry,
    Return,
    Send,
    Throttle,
)
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

from ._upstream import Sleeps, Upstream

# --- credentials ---------------------------------------------------------------------------


def test_an_api_key_travels_as_a_parameter_and_a_token_as_a_header() -> None:
    key = Credentials(api_key=SENTINEL)
    assert dict(key.params) == {"api_key": SENTINEL}
    assert "Authorization" not in key.headers
    token = Credentials(access_token=SENTINEL)
    assert dict(token.params) == {}
    assert token.headers["Authorization"] == f"Bearer {SENTINEL}"
    assert token.headers["Accept"] == "application/json"
    for credentials in (key, token):
        assert SENTINEL not in repr(credentials)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of api_key"),
        ({"api_key": "a", "access_token": "b"}, "exactly one of api_key"),
        ({"api_key": " "}, "api_key must be"),
        ({"api_key": "has space"}, "api_key must be"),
        ({"access_token": 5}, "access_token must be a string"),
    ],
)
def test_bad_credentials(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as info:
        Credentials(**kwargs)
    assert "has space" not in str(info.value)  # a secret is never echoed


def test_redact_masks_the_plain_and_the_percent_encoded_forms() -> None:
    credentials = Credentials(api_key=f"{SENTINEL}+/x")
    text = credentials.redact(f"{SENTINEL}+/x and {SENTINEL}%2B%2Fx")
    assert SENTINEL not in text


# --- the throttle ----------------------------------------------------------------------------


def test_throttle_spaces_starts_and_earns_no_burst_when_idle() -> None:
    clock = FakeClock(100)
    throttle = Throttle(10, clock)
    assert [throttle.reserve() for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    clock.advance(60)
    assert [throttle.reserve() for _ in range(2)] == pytest.approx([0.0, 0.1])


def test_throttle_pause_holds_every_request_and_the_longer_pause_wins() -> None:
    clock = FakeClock(100)
    throttle = Throttle(None, clock)
    assert throttle.pause_left() == 0.0
    throttle.pause(3)
    throttle.pause(1)  # shorter: does not cut the first one
    assert throttle.pause_left() == pytest.approx(3.0)
    clock.advance(2)
    assert throttle.pause_left() == pytest.approx(1.0)
    clock.advance(5)
    assert throttle.pause_left() == 0.0
    assert throttle.reserve() == 0.0  # no start limit without max_rps


# --- the state machine of one GET ------------------------------------------------------------


def base(**kwargs: Any) -> BaseTransport[Any]:
    """A transport whose decisions are fed by hand (its HTTP client is never used)."""
    kwargs.setdefault("api_key", SENTINEL)
    kwargs.setdefault("access_token", None)
    kwargs.setdefault("base_url", "https://tmdb.test/3")
    kwargs.setdefault("http_client", Upstream().http())
    return AsyncTransport(**kwargs)


def answer(transport: BaseTransport[Any], *replies: tuple[int, dict[str, str], bytes]) -> list[Any]:
    """Feed ``replies`` to one exchange; return its decisions."""
    exchange = transport.exchange("/movie/1", {"language": "en"})
    decisions = []
    for status, headers, body in replies:
        exchange.begin()
        decision = exchange.answered(status, headers, body)
        if isinstance(decision, Retry | Raise) and decision.pause:
            transport.throttle.pause(decision.pause)  # as the I/O side does
        decisions.append(decision)
    return decisions


def test_an_exchange_sends_the_credentials_with_the_query() -> None:
    exchange = base().exchange("/movie/1", {"language": "en"})
    assert exchange.url == "https://tmdb.test/3/movie/1"
    assert exchange.params == {"language": "en", "api_key": SENTINEL}


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"id": 1}', {"id": 1}),
        (b'[{"iso_639_1": "en"}]', {"results": [{"iso_639_1": "en"}]}),  # array endpoints
    ],
)
def test_a_2xx_json_body_is_returned(body: bytes, value: dict[str, Any]) -> None:
    assert answer(base(), (200, {}, body)) == [Return(value)]


@pytest.mark.parametrize("body", [b"<html>", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_a_response_error(body: bytes) -> None:
    transport = base()
    [decision] = answer(transport, (200, {}, body))
    assert isinstance(decision, Raise)
    assert isinstance(decision.error, TmdbResponseError)
    assert "not a JSON object" in str(decision.error)
    assert transport.errors == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, TmdbNotFound),
        (401, TmdbAuthError),
        (403, TmdbAuthError),
        (400, TmdbResponseError),
        (422, TmdbResponseError),
    ],
)
def test_4xx_other_than_429_end_the_get_at_once(status: int, error: type[Exception]) -> None:
    transport = base()
    body = b'{"status_code": 7, "status_message": "nope"}'
    [decision] = answer(transport, (status, {}, body))
    assert isinstance(decision, Raise)
    assert type(decision.error) is error
    assert decision.error.status == status
    assert decision.error.path == "/movie/1"
    assert str(decision.error) == f"TMDB /movie/1: HTTP {status}: nope"
    assert transport.retries == 0


def test_5xx_back_off_exponentially_then_give_up() -> None:
    rng = random.Random(7)
    transport = base(max_retries=3, rng=random.Random(7))
    decisions = answer(transport, *[(502, {}, b"")] * 4)
    expected = [backoff_delay(a, base=0.5, cap=8.0, jitter=rng.random()) for a in range(3)]
    assert decisions[:3] == [Retry(delay) for delay in expected]
    assert isinstance(decisions[3], Raise)
    assert isinstance(decisions[3].error, TmdbUnavailable)
    assert decisions[3].error.status == 502
    assert (transport.upstream_calls, transport.retries, transport.errors) == (4, 3, 1)


def test_a_429_with_retry_after_pauses_the_throttle_instead_of_sleeping() -> None:
    clock = FakeClock(50)
    transport = base(clock=clock, max_retries=1, max_retry_after=5)
    decisions = answer(
        transport, (429, {"Retry-After": "2"}, b""), (429, {"retry-after": "120"}, b"")
    )
    assert decisions[0] == Retry(0.0, pause=2.0)  # the I/O side pauses the limiter
    assert isinstance(decisions[1], Raise)
    assert decisions[1].pause == 5.0
    assert isinstance(decisions[1].error, TmdbRateLimited)
    assert transport.throttle.pause_left() == pytest.approx(5.0)  # capped; set on the last too
    assert transport.rate_limited == 2


def test_a_429_without_retry_after_backs_off() -> None:
    [decision] = answer(base(rng=random.Random(1)), (429, {}, b""))
    assert isinstance(decision, Retry)
    assert 0.25 <= decision.delay <= 0.5


def test_a_transport_error_is_retried_then_unavailable_without_the_secret() -> None:
    transport = base(max_retries=1)
    exchange = transport.exchange("/movie/1", {})
    request = httpx.Request("GET", f"https://tmdb.test/3/movie/1?api_key={SENTINEL}")
    exchange.begin()
    assert isinstance(exchange.failed(httpx.ConnectError("refused", request=request)), Retry)
    exchange.begin()
    decision = exchange.failed(httpx.ReadTimeout(f"timed out on {request.url}", request=request))
    assert isinstance(decision, Raise)
    assert isinstance(decision.error, TmdbUnavailable)
    assert decision.error.status is None
    assert "ReadTimeout" in str(decision.error)
    assert SENTINEL not in str(decision.error)


def test_messages_are_masked_and_bounded() -> None:
    body = ('{"status_message": "bad key ' + SENTINEL + " " + "x" * 500 + '"}').encode()
    [decision] = answer(base(), (400, {}, body))
    assert SENTINEL not in str(decision.error)
    assert len(str(decision.error)) <= 300


def test_a_closed_transport_refuses_the_next_attempt() -> None:
    transport = base()
    exchange = transport.exchange("/movie/1", {})
    transport.closed = True  # as aclose() does while a background refresh still runs
    with pytest.raises(TmdbUnavailable, match="closed"):
        exchange.begin()
    assert transport.upstream_calls == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://u:p@x/3"}, "credentials"),
        ({"base_url": 3}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_rps": 0}, "max_rps"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"rng": 5}, "rng"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        base(**kwargs)


# --- one deadline for the whole GET -----------------------------------------------------------


def test_the_deadline_is_the_timeout_after_the_start_on_the_transport_clock() -> None:
    clock = FakeClock(100)
    exchange = base(clock=clock, timeout=4).exchange("/movie/1", {})
    assert exchange.deadline == 104
    clock.advance(1.5)
    assert exchange.remaining() == pytest.approx(2.5)


def test_a_backoff_longer_than_what_is_left_gives_up_with_the_last_error() -> None:
    clock = FakeClock(100)
    transport = base(clock=clock, timeout=1.0, max_retries=5, rng=random.Random(3))
    exchange = transport.exchange("/movie/1", {})
    exchange.begin()
    first = exchange.answered(503, {}, b"")
    assert isinstance(first, Retry)  # 0.25-0.5 s fits in 1 s
    clock.advance(first.delay)
    exchange.begin()
    clock.advance(0.4)  # the second attempt took its time
    second = exchange.answered(502, {}, b"")
    assert isinstance(second, Raise)  # 0.5-1 s no longer fits
    assert isinstance(second.error, TmdbUnavailable)
    assert second.error.status == 502
    assert (transport.retries, transport.errors) == (1, 1)


def test_a_429_pause_longer_than_what_is_left_gives_up_before_waiting() -> None:
    clock = FakeClock(100)
    transport = base(clock=clock, timeout=5, max_retry_after=60)
    exchange = transport.exchange("/movie/1", {})
    assert exchange.next() == Send(0.0)
    exchange.begin()
    decision = exchange.answered(429, {"retry-after": "30"}, b"")
    assert isinstance(decision, Raise)  # no retry is begun that the budget cannot reach
    assert isinstance(decision.error, TmdbRateLimited)
    assert decision.error.status == 429
    assert transport.retries == 0
    assert decision.pause == 30.0  # the I/O side still pauses every request
    transport.throttle.pause(decision.pause)
    other = transport.exchange("/movie/2", {})  # a request arriving during the pause
    refused = other.next()
    assert isinstance(refused, Raise)
    assert isinstance(refused.error, TmdbRateLimited)
    assert "wait 30.0 s, more than the 5.0 s left" in str(refused.error)
    # What a web integration sends as Retry-After when it answers the outage.
    assert decision.error.retry_after == 30.0
    assert refused.error.retry_after == pytest.approx(30.0)


def test_a_5xx_carries_its_retry_after_and_other_errors_none() -> None:
    transport = base(max_retries=0)
    [unavailable] = answer(transport, (503, {"Retry-After": "12"}, b""))
    [bare] = answer(transport, (502, {}, b""))
    [missing] = answer(transport, (404, {"Retry-After": "12"}, b""))
    assert unavailable.error.retry_after == 12.0
    assert bare.error.retry_after is None
    assert missing.error.retry_after is None


def test_a_pause_within_the_budget_is_waited_once_then_the_slot_is_taken() -> None:
    clock = FakeClock(100)
    transport = base(clock=clock, max_rps=10)
    transport.throttle.pause(2)
    exchange = transport.exchange("/movie/1", {})
    assert exchange.next() == Retry(2.0)
    assert exchange.next() == Send(0.0)  # not the same pause again, even on a still clock


def test_a_limiter_slot_beyond_the_budget_is_not_waited_for() -> None:
    clock = FakeClock(100)
    transport = base(clock=clock, max_rps=1, timeout=2.5)
    waits = [transport.exchange(f"/movie/{i}", {}).next() for i in range(4)]
    assert waits[:3] == [Send(0.0), Send(1.0), Send(2.0)]
    assert isinstance(waits[3], Raise)
    assert isinstance(waits[3].error, TmdbUnavailable)
    assert "rate limiter's next slot" in str(waits[3].error)


def test_a_spent_budget_is_not_sent_at_all() -> None:
    clock = FakeClock(100)
    exchange = base(clock=clock, timeout=1).exchange("/movie/1", {})
    clock.advance(1)
    decision = exchange.next()
    assert isinstance(decision, Raise)
    assert "no time left of the 1 s timeout" in str(decision.error)


def test_an_attempt_that_ran_into_the_deadline_is_not_retried() -> None:
    transport = base(max_retries=3)
    exchange = transport.exchange("/movie/1", {})
    exchange.begin()
    assert isinstance(exchange.timed_out(), Raise)
    request = httpx.Request("GET", "https://tmdb.test/3/movie/1")
    exchange.begin()
    decision = exchange.failed(httpx.ReadTimeout("timed out", request=request))
    assert isinstance(decision, Raise)  # httpx's own timeouts are the same budget
    assert "within the 10 s timeout (ReadTimeout: timed out)" in str(decision.error)
    assert transport.retries == 0


def test_counters_and_jitter_are_exact_from_many_threads() -> None:
    transport = base()

    def work() -> None:
        for _ in range(500):
            transport.add("upstream_calls")
            transport.random()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert transport.upstream_calls == 16 * 500


def test_the_throttle_hands_every_thread_its_own_slot() -> None:
    throttle = Throttle(100, FakeClock(0))  # a still clock: each wait is its slot
    waits: list[float] = []
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait(30)
        for _ in range(50):
            waits.append(throttle.reserve())

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(waits) == pytest.approx([i / 100 for i in range(16 * 50)])


# --- the async I/O -----------------------------------------------------------------------------


def make(upstream: Upstream, sleep: Sleeps | None = None, **kwargs: Any) -> AsyncTransport:
    clock = sleep.clock if sleep is not None and sleep.clock is not None else FakeClock(1000)
    kwargs.setdefault("api_key", SENTINEL)
    kwargs.setdefault("access_token", None)
    kwargs.setdefault("http_client", upstream.http())
    return AsyncTransport(
        sleep=sleep or Sleeps(clock),
        clock=clock,
        base_url="https://tmdb.test/3",
        **kwargs,
    )


@pytest.mark.anyio
async def test_429_waits_for_retry_after_then_succeeds() -> None:
    sleeps = Sleeps(FakeClock(1000))
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"}), None])
    upstream = Upstream(lambda r: next(answers) or httpx.Response(200, json={"id": 5}))
    transport = make(upstream, sleeps, max_rps=None)
    assert await transport.aget("/movie/5", {}) == {"id": 5}
    assert sleeps.delays == [2.0]
    assert (transport.rate_limited, transport.retries, transport.upstream_calls) == (1, 1, 2)


@pytest.mark.anyio
async def test_persistent_429_raises_rate_limited_after_the_retries() -> None:
    sleeps = Sleeps(FakeClock(1000))
    upstream = Upstream(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    transport = make(upstream, sleeps, max_retries=2, max_rps=None, max_retry_after=5, timeout=30)
    with pytest.raises(TmdbRateLimited):
        await transport.aget("/movie/5", {})
    assert upstream.total == 3
    assert sleeps.delays == [5.0, 5.0]  # Retry-After capped at max_retry_after


@pytest.mark.anyio
async def test_5xx_and_transport_errors_back_off_exponentially() -> None:
    sleeps = Sleeps(FakeClock(1000))

    def respond(request: httpx.Request) -> httpx.Response:
        if upstream.total % 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(502)

    upstream = Upstream(respond)
    transport = make(upstream, sleeps, max_retries=3, max_rps=None)
    with pytest.raises(TmdbUnavailable):
        await transport.aget("/movie/9", {})
    assert upstream.total == 4
    assert len(sleeps.delays) == 3
    for attempt, delay in enumerate(sleeps.delays):
        step = min(8.0, 0.5 * 2**attempt)
        assert step / 2 <= delay <= step


@pytest.mark.anyio
async def test_the_limiter_spaces_upstream_starts() -> None:
    sleeps = Sleeps()  # time stands still: each wait shows its slot
    upstream = Upstream()
    transport = make(upstream, sleeps, max_rps=10)
    async with anyio.create_task_group() as tg:
        for movie_id in range(1, 21):
            tg.start_soon(transport.aget, f"/movie/{movie_id}", {})
    assert upstream.total == 20
    assert sorted(sleeps.delays) == pytest.approx([0.1 * i for i in range(1, 20)])


@pytest.mark.anyio
async def test_a_429_pauses_every_request_not_only_the_one_that_got_it() -> None:
    sleeps = Sleeps()  # time stands still: the pause still holds for the second request
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"})])
    upstream = Upstream(lambda r: next(answers, None) or Upstream.movie(r))
    transport = make(upstream, sleeps, max_rps=None)
    await transport.aget("/movie/1", {})  # 429, waits 3 s, retries
    await transport.aget("/movie/2", {})  # a different request waits for the same pause
    assert sleeps.delays == [3.0, 3.0]


@pytest.mark.anyio
async def test_the_token_goes_in_the_header_and_never_in_the_url() -> None:
    upstream = Upstream()
    transport = make(upstream, api_key=None, access_token=SENTINEL)
    await transport.aget("/movie/603", {"language": "en-US"})
    [request] = upstream.requests
    assert request.headers["Authorization"] == f"Bearer {SENTINEL}"
    assert dict(request.url.params) == {"language": "en-US"}
    assert request.headers["Accept"] == "application/json"


@pytest.mark.anyio
async def test_percent_encoded_keys_are_masked_in_httpx_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gc.collect()  # clients other tests dropped (with their keys) are gone for good
    caplog.set_level(logging.INFO, logger="httpx")
    key = f"{SENTINEL}+/x~!"
    upstream = Upstream()
    transport = make(upstream, api_key=key)
    await transport.aget("/movie/1", {})
    assert "HTTP Request" in caplog.text
    assert "api_key=" in caplog.text
    for form in (SENTINEL, key, "sentinel%2B", "%2Fx"):
        assert form not in caplog.text


@pytest.mark.anyio
async def test_a_closed_transport_sends_nothing() -> None:
    upstream = Upstream()
    transport = make(upstream)
    await transport.aclose()
    with pytest.raises(TmdbUnavailable, match="closed"):
        await transport.aget("/movie/1", {})
    assert upstream.total == 0


@pytest.mark.anyio
async def test_a_request_in_flight_at_close_is_still_masked_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    upstream = Upstream()
    upstream.gate = anyio.Event()
    http = upstream.http()
    transport = make(upstream, api_key=SENTINEL, http_client=http)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.aget, "/movie/1", {})
            await anyio.wait_all_tasks_blocked()
            await transport.aclose()  # the injected client stays open: the request goes on
            upstream.gate.set()
    await http.aclose()
    assert "HTTP Request" in caplog.text
    assert SENTINEL not in caplog.text
