"""The demo's load driver: the scripted users and bursts, played against one running build.

:class:`LoadPlan` says what the load is; :class:`Driver` plays it over HTTP
against an app served on 127.0.0.1 and records every answer's latency and
status. ``builds.py`` runs it against each build of the example app.
"""

from __future__ import annotations

import random
import ssl
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

__all__ = ["EXPECTED_STATUSES", "Driver", "LoadPlan"]

# Answers a correct build gives under this load (403: over the user's limit,
# 409: already requested); anything else counts as an error.
EXPECTED_STATUSES = frozenset({200, 201, 304, 403, 409})


@dataclass(frozen=True)
class LoadPlan:
    """The scripted load, the same for both builds.

    Attributes:
        users: Concurrent users; each runs ``rounds`` rounds of: the profile
            page (requests list, then stats and up to ``posters`` poster
            images side by side), a title's details page, a new request for
            a title; the first ``admins`` also load the recent-requests list.
        rounds: Rounds per user.
        bursts: Bursts of ``burst_size`` users requesting the same new title
            at the same moment, spread over the run.
        burst_size: Concurrent requests per burst.
        titles: Movies in the catalogue users pick from (plus a third as many shows).
        posters: Poster images loaded per profile view.
        admins: Users who also poll the recent-requests list.
        think_s: Mean pause of a user between pages (uniform, 0.5x to 1.5x).
        tmdb_latency: Seconds FakeTmdb takes per answer.
    """

    users: int = 30
    rounds: int = 12
    bursts: int = 12
    burst_size: int = 25
    titles: int = 60
    posters: int = 4
    admins: int = 3
    think_s: float = 0.4
    tmdb_latency: float = 0.03

    @classmethod
    def quick(cls) -> LoadPlan:
        """A short run for CI: seconds, same invariants."""
        return cls(users=10, rounds=3, bursts=3, burst_size=15, titles=20, admins=2, think_s=0.05)

    def catalogue(self) -> list[tuple[str, int]]:
        """The titles users browse and request (The Matrix and its sequels first)."""
        movies = [603, 604, 605, *range(10_001, 10_001 + self.titles - 3)]
        shows = [1399, *range(20_001, 20_001 + max(0, self.titles // 3 - 1))]
        return [("movie", i) for i in movies] + [("tv", i) for i in shows]


class _Progress:
    """Counts finished user rounds; lets the burst task wait for a count."""

    def __init__(self) -> None:
        self.rounds = 0
        self._waiters: list[tuple[int, anyio.Event]] = []

    def advance(self) -> None:
        self.rounds += 1
        for count, event in self._waiters:
            if self.rounds >= count:
                event.set()

    async def wait_for(self, count: int) -> None:
        if self.rounds < count:
            event = anyio.Event()
            self._waiters.append((count, event))
            await event.wait()


class Driver:
    """Plays the scripted load against one running build and records every answer.

    Every user (and every burst requester) has an HTTP client of its own, as
    browsers do; one shared client would spend its time scanning its own
    connection pool (httpcore's cost grows with its connections).
    """

    def __init__(self, base_url: str, plan: LoadPlan, admin_token: str) -> None:
        self.base_url = base_url
        self.plan = plan
        self.admin = {"X-Admin-Token": admin_token}
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.progress = _Progress()
        self._tls = ssl.create_default_context()  # unused over http://, costly to build per client

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=60.0, verify=self._tls)

    async def call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.errors += 1
            return None
        self.latencies.append((time.perf_counter() - start) * 1000)
        self.statuses[response.status_code] += 1
        if response.status_code not in EXPECTED_STATUSES:
            self.errors += 1
        return response

    async def request(
        self, client: httpx.AsyncClient, user: int, media_type: str, tmdb_id: int
    ) -> None:
        body = {"mediaType": media_type, "mediaId": tmdb_id}
        headers = {"X-User-Id": str(user)}
        await self.call(client, "POST", "/api/v1/request", json=body, headers=headers)

    async def get(self, client: httpx.AsyncClient, url: str, user: int | None = None) -> None:
        await self.call(client, "GET", url, headers={"X-User-Id": str(user)} if user else None)

    async def think(self, rng: random.Random) -> None:
        await anyio.sleep(rng.uniform(0.5, 1.5) * self.plan.think_s)

    async def user(self, index: int) -> None:
        rng = random.Random(f"media_app-demo:{index}")
        catalogue = self.plan.catalogue()
        user = index + 1
        async with self.client() as client:
            for _ in range(self.plan.rounds):
                # The profile page: the list, then its stats and posters side by side.
                page = await self.call(
                    client, "GET", "/api/profile/requests", headers={"X-User-Id": str(user)}
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.get, client, "/api/profile/stats", user)
                    for poster in _posters(page)[: self.plan.posters]:
                        tg.start_soon(self.get, client, f"/imageproxy/w342{poster}")
                await self.think(rng)
                # A title's page, then a request for some title.
                media_type, tmdb_id = rng.choice(catalogue)
                await self.get(client, f"/api/v1/{media_type}/{tmdb_id}")
                await self.think(rng)
                media_type, tmdb_id = rng.choice(catalogue)
                await self.request(client, user, media_type, tmdb_id)
                if index < self.plan.admins:
                    await self.call(client, "GET", "/api/admin/requests/recent", headers=self.admin)
                await self.think(rng)
                self.progress.advance()

    async def bursts(self) -> None:
        total = self.plan.users * self.plan.rounds
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(self.client()) for _ in range(self.plan.burst_size)
            ]
            for burst in range(self.plan.bursts):
                await self.progress.wait_for(total * burst // self.plan.bursts)
                title = 900_000 + burst  # nobody else requests these
                async with anyio.create_task_group() as tg:
                    for user, client in enumerate(clients, start=1):
                        tg.start_soon(self.request, client, user, "movie", title)

    async def run(self, build: str, say: Callable[[str], None]) -> float:
        start = time.perf_counter()
        total = self.plan.users * self.plan.rounds

        async def report() -> None:
            while True:
                await anyio.sleep(2.0)
                say(
                    f"   {build}: {self.progress.rounds}/{total} user rounds, "
                    f"{len(self.latencies):,} requests, {time.perf_counter() - start:.0f} s"
                )

        async with anyio.create_task_group() as outer:
            outer.start_soon(report)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.bursts)
                for index in range(self.plan.users):
                    tg.start_soon(self.user, index)
            outer.cancel_scope.cancel()
        return time.perf_counter() - start


def _posters(page: httpx.Response | None) -> list[str]:
    if page is None or page.status_code != 200:
        return []
    return [
        item["media"]["posterPath"]
        for item in page.json()["results"]
        if item["media"] and item["media"]["posterPath"]
    ]
