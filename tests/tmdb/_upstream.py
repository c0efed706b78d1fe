"""A scripted TMDB behind ``httpx.MockTransport`` and a sleep that moves a FakeClock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import anyio
import anyio.lowlevel
import httpx

from seerrperf.testing import FakeClock

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    """An injected ``sleep``: records every delay and moves ``clock`` by it.

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


class Upstream:
    """A scripted TMDB: counts requests per path; answers with ``respond``.

    Set ``failing`` to a status (404: the title was deleted, 503: an outage)
    to answer every request with it instead.
    """

    def __init__(self, respond: Handler | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.respond = respond or self.movie
        self.gate: anyio.Event | None = None
        self.failing: int | None = None

    @staticmethod
    def movie(request: httpx.Request) -> httpx.Response:
        tail = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"id": int(tail) if tail.isdigit() else 0, "title": "x"})

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.path] += 1
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing is not None:
            return httpx.Response(self.failing)
        return self.respond(request)

    def http(self) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` answered by this upstream."""
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    @property
    def total(self) -> int:
        return sum(self.calls.values())
