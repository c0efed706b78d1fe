"""A scripted TMDB behind ``httpx.MockTransport``, for both twins; sleeps that move a FakeClock."""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from seerrperf import AsyncTmdbClient, TmdbClient
from seerrperf.testing import FakeClock

Handler = Callable[[httpx.Request], httpx.Response]

REFRESH_THREAD = "seerrperf-cache-refresh"  # NamedCache's sync refresh threads


class Sleeps:
    """An injected ``sleep`` for the async twin: records every delay and moves ``clock`` by it.

    Without a clock time stands still, so each wait shows the slot it was given.
    """

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()


class SyncSleeps:
    """The same for the sync twin; safe from many threads (list.append is atomic)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


class Upstream:
    """A scripted TMDB: counts requests per path; answers with ``respond``.

    Set ``failing`` to a status (404: the title was deleted, 503: an outage)
    to answer every request with it instead. ``gate`` (async) or
    ``thread_gate`` (sync) holds every request until it is set.
    """

    def __init__(self, respond: Handler | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.respond = respond or self.movie
        self.gate: anyio.Event | None = None
        self.thread_gate: threading.Event | None = None
        self.failing: int | None = None
        self._lock = threading.Lock()

    @staticmethod
    def movie(request: httpx.Request) -> httpx.Response:
        tail = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"id": int(tail) if tail.isdigit() else 0, "title": "x"})

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if self.failing is not None:
            return httpx.Response(self.failing)
        return self.respond(request)

    def _count(self, request: httpx.Request) -> None:
        with self._lock:
            self.calls[request.url.path] += 1
            self.requests.append(request)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self._count(request)
        if self.gate is not None:
            await self.gate.wait()
        return self._answer(request)

    def sync_handler(self, request: httpx.Request) -> httpx.Response:
        self._count(request)
        if self.thread_gate is not None:
            assert self.thread_gate.wait(30)
        return self._answer(request)

    def http(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` answered by this upstream."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def sync_http(self) -> httpx.Client:
        """An ``httpx.Client`` answered by this upstream."""
        return httpx.Client(transport=httpx.MockTransport(self.sync_handler))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())


AnyClient = TmdbClient | AsyncTmdbClient


def make_twin(
    twin: str, upstream: Upstream, clock: FakeClock | None = None, **kwargs: Any
) -> AnyClient:
    """A client of kind ``twin`` (``"sync"`` or ``"async"``) on ``upstream``.

    Its retries, limiter, deadline and default cache run on ``clock``.
    """
    clock = clock or FakeClock(1000)
    kwargs.setdefault("api_key", "tmdb-test-key")
    kwargs.setdefault("base_url", "https://tmdb.test/3")
    if twin == "sync":
        kwargs.setdefault("sleep", SyncSleeps(clock))
        return TmdbClient(http_client=upstream.sync_http(), clock=clock, **kwargs)
    kwargs.setdefault("sleep", Sleeps(clock))
    return AsyncTmdbClient(http_client=upstream.http(), clock=clock, **kwargs)


async def call(result: Any) -> Any:
    """The value of a twin's call: awaited for the async one, as it is for the sync one."""
    return await result if inspect.isawaitable(result) else result


def join_refreshes(timeout: float = 10) -> None:
    """Wait (with a deadline) for every sync stale-while-revalidate refresh thread to end."""
    for thread in threading.enumerate():
        if thread.name.startswith(REFRESH_THREAD):
            thread.join(timeout)
            assert not thread.is_alive()
