"""The sync TmdbClient under real gunicorn, with --preload: every worker gets its answers.

The client is created, and has made a request, in the master before the
fork; each worker must open connections of its own and answer within the
client's timeout -- no hang, no socket shared with the master or a sibling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from seerrperf.testing import FakeTmdb

pytestmark = [pytest.mark.slow, pytest.mark.anyio]  # real gunicorn processes

ROOT = Path(__file__).resolve().parents[2]
_BOOTED = re.compile(r"Booting worker with pid: (\d+)")
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class _Log:
    """gunicorn's log lines as they arrive, with an event per new line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def follow(self, stream: anyio.abc.ByteReceiveStream) -> None:
        buffered = BufferedByteReceiveStream(stream)
        while True:
            try:
                line = await buffered.receive_until(b"\n", 1 << 16)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                return
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, found: Callable[[], bool], seconds: float) -> None:
        with anyio.fail_after(seconds):
            while not found():
                await self._changed.wait()

    def booted(self) -> set[int]:
        return {int(m.group(1)) for m in map(_BOOTED.search, self.lines) if m}

    def port(self) -> int | None:
        return next((int(m.group(1)) for m in map(_LISTENING.search, self.lines) if m), None)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--workers", "4"], id="sync-w4"),
        pytest.param(["--workers", "2", "--threads", "8"], id="gthread-w2-t8"),
    ],
)
async def test_a_client_made_before_the_fork_answers_in_every_worker(options: list[str]) -> None:
    fake = FakeTmdb(api_key="wsgi-test-key", latency=0.05)  # keeps workers busy: requests spread
    log = _Log()
    async with fake.serve() as tmdb_url, anyio.create_task_group() as tg:
        process = await anyio.open_process(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *options,
                "--preload",
                "--bind",
                "127.0.0.1:0",
                "--log-level",
                "info",
                "--timeout",
                "30",
                "tests.tmdb._wsgi_app:app",
            ],
            cwd=ROOT,
            env={**os.environ, "WSGI_TMDB_URL": tmdb_url},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        assert process.stderr is not None
        tg.start_soon(log.follow, process.stderr)
        try:
            workers = int(options[1])
            await log.wait_for(lambda: len(log.booted()) == workers and bool(log.port()), 90)
            assert fake.stats().requests_by_path["/3/movie/603"] == 1  # the master's, once
            served: dict[int, int] = {}
            limits = httpx.Limits(max_keepalive_connections=0)  # each request may meet any worker
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{log.port()}", limits=limits, timeout=30
            ) as client:
                limiter = anyio.CapacityLimiter(16)

                async def ask(movie: int) -> None:
                    async with limiter:
                        response = await client.get(f"/movie/{movie}")
                    assert response.status_code == 200, "\n".join(log.lines)
                    pid, movie_id = map(int, response.text.split())
                    assert movie_id == movie
                    served[pid] = served.get(pid, 0) + 1

                with anyio.fail_after(60):  # each answer within the client's 5 s timeout
                    async with anyio.create_task_group() as requests:
                        for movie in range(1000, 1040):
                            requests.start_soon(ask, movie)
            assert sum(served.values()) == 40
            assert set(served) <= log.booted()
            assert len(served) >= 2, served  # several workers answered
            stats = fake.stats()
            assert stats.total_requests == 41  # the master's, then one per movie
            assert stats.connections >= 1 + len(served)  # the master's, then each worker's own
            assert "Traceback" not in "\n".join(log.lines)
        finally:
            process.terminate()
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            tg.cancel_scope.cancel()
            await process.aclose()
