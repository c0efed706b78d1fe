"""The fleet's figures from any worker: real processes sharing PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from seerrperf.prometheus import MULTIPROC_DIR_ENV
from seerrperf.testing import FakeTmdb

from ._metrics import Samples, promtool_check, samples

pytestmark = pytest.mark.slow  # every test here starts real processes

ROOT = Path(__file__).resolve().parents[2]
C = (("cache", "c"),)


def _run(directory: Path, *arguments: str) -> str:
    """Run a scenario as a worker would be run; return what it printed."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.monitoring._scenarios", *arguments],
        cwd=ROOT,
        env={**os.environ, MULTIPROC_DIR_ENV: str(directory)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr  # a forked child's, say
    return result.stdout


def _files(directory: Path) -> Samples:
    """What the directory holds, read without any process copying into it first."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return samples(generate_latest(registry).decode())


def _buckets(found: Samples) -> dict[str, float]:
    return {
        labels[0][1]: value
        for (name, labels), value in found.items()
        if name == "seerrperf_tmdb_upstream_latency_seconds_bucket"
    }


def test_counters_add_up_over_processes_and_gauges_follow_the_live_ones(tmp_path: Path) -> None:
    _run(tmp_path, "count", "3", "2")
    _run(tmp_path, "count", "5", "4")
    before = _files(tmp_path)
    assert before[("seerrperf_cache_keys", C)] == 2  # the two ended workers' levels, still there
    # A worker killed while creating its file leaves it empty for good
    # (prometheus/client_python#1199): the fleet's scrape still works.
    (tmp_path / "counter_999999.db").touch()
    text = _run(tmp_path, "scrape")
    found = samples(text)
    assert found[("seerrperf_cache_hits_total", C)] == 8
    assert found[("seerrperf_cache_lookups_total", C)] == 8
    assert found[("seerrperf_tmdb_requests_total", ())] == 6
    assert found[("seerrperf_tmdb_upstream_calls_total", ())] == 6
    assert found[("seerrperf_tmdb_upstream_latency_seconds_count", ())] == 6
    assert _buckets(found)["+Inf"] == 6
    # Levels are summed over live processes only: the scraper's one key.
    assert found[("seerrperf_cache_keys", C)] == 1
    assert found[("seerrperf_cache_max_keys", C)] == 10_000
    result = promtool_check(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_forked_worker_counts_only_what_it_did(tmp_path: Path) -> None:
    report = json.loads(_run(tmp_path, "fork"))
    assert report["child_status"] == 0  # its background thread restarted and copied
    found = samples(report["text"])
    assert found[("seerrperf_cache_hits_total", C)] == 5  # 3 before the fork, 2 in the child


def test_the_histogram_stays_exact_beyond_the_recent_window(tmp_path: Path) -> None:
    report = json.loads(_run(tmp_path, "overflow", "2100"))
    for stage, calls in (("first", 2100), ("second", 2110)):
        fleet, local = (samples(text) for text in report[stage])
        assert _buckets(fleet) == _buckets(local)
        assert fleet[("seerrperf_tmdb_upstream_latency_seconds_count", ())] == calls
        assert fleet[("seerrperf_tmdb_upstream_calls_total", ())] == calls
    # The 52 calls the window had lost are approximated at their buckets' bounds.
    fleet_sum = samples(report["second"][0])[("seerrperf_tmdb_upstream_latency_seconds_sum", ())]
    local_sum = samples(report["second"][1])[("seerrperf_tmdb_upstream_latency_seconds_sum", ())]
    assert fleet_sum >= local_sum


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

    async def wait_for(self, found: Callable[[list[str]], bool], seconds: float) -> None:
        with anyio.fail_after(seconds):
            while not found(self.lines):
                await self._changed.wait()

    def booted(self) -> list[int]:
        return [int(m.group(1)) for m in map(_BOOTED.search, self.lines) if m]

    def port(self) -> int:
        return next(int(m.group(1)) for m in map(_LISTENING.search, self.lines) if m)


_BOOTED = re.compile(r"Booting worker with pid: (\d+)")
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_REQUESTS = ("seerrperf_tmdb_requests_total", ())
_KEYS = ("seerrperf_cache_keys", (("cache", "tmdb"),))
_FLEET_FIGURES = (
    _REQUESTS,
    ("seerrperf_tmdb_upstream_calls_total", ()),
    ("seerrperf_tmdb_upstream_latency_seconds_count", ()),
    _KEYS,  # each worker holds what it fetched; live workers are summed
)


async def _scrape_every_worker(
    client: httpx.AsyncClient, workers: set[int], done: Callable[[Samples], bool], log: _Log
) -> dict[int, Samples]:
    """Scrape until each of ``workers`` has answered with figures that satisfy ``done``.

    The listening socket decides which worker answers; each says who it is.
    """
    latest: dict[int, Samples] = {}
    with anyio.fail_after(90):
        while not all(pid in latest and done(latest[pid]) for pid in workers):
            response = await client.get("/metrics")
            assert response.status_code == 200, "\n".join(log.lines)
            latest[int(response.headers["x-worker-pid"])] = samples(response.text)
    return latest


@pytest.mark.anyio
async def test_any_gunicorn_worker_reports_the_fleet(tmp_path: Path) -> None:
    requests = 40
    _run(tmp_path, "count", "1", "2")  # an earlier run's figures: on_starting removes them
    assert _files(tmp_path)[_REQUESTS] == 2
    fake = FakeTmdb(latency=0.05)  # keeps workers busy, so the requests spread over them
    log = _Log()
    async with fake.serve() as tmdb_url, anyio.create_task_group() as tg:
        process = await anyio.open_process(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "4",
                "--bind",
                "127.0.0.1:0",
                "--config",
                "tests/monitoring/_gunicorn_conf.py",
                "--log-level",
                "info",
                "tests.monitoring._fleet_app:app",
            ],
            cwd=ROOT,
            env={**os.environ, MULTIPROC_DIR_ENV: str(tmp_path), "FLEET_TMDB_URL": tmdb_url},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        assert process.stderr is not None
        tg.start_soon(log.follow, process.stderr)
        try:
            await log.wait_for(lambda lines: len(log.booted()) == 4 and log.port() > 0, 90)
            workers = set(log.booted())
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{log.port()}", limits=limits, timeout=60
            ) as client:
                served: dict[int, int] = {}
                limiter = anyio.CapacityLimiter(8)

                async def ask(movie: int) -> None:
                    async with limiter:
                        response = await client.get(f"/movie/{movie}")
                    assert response.status_code == 200, "\n".join(log.lines)
                    pid = int(response.text)
                    served[pid] = served.get(pid, 0) + 1

                async with anyio.create_task_group() as requests_group:
                    for movie in range(1, requests + 1):
                        requests_group.start_soon(ask, movie)
                assert sum(served.values()) == requests
                assert len(served) >= 2, served  # spread over several workers

                def complete(found: Samples) -> bool:
                    assert found[_REQUESTS] <= requests  # never more than was made
                    # Peers copy every 0.1 s; a scrape may come between a
                    # request's count and its upstream latency.
                    return all(found.get(name) == requests for name in _FLEET_FIGURES)

                fleet = await _scrape_every_worker(client, workers, complete, log)
                assert all(complete(found) for found in fleet.values())
                assert fake.stats().total_requests == requests
                text = (await client.get("/metrics")).text
                result = promtool_check(text)
                assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

                # A worker dies: its counts stay in the totals, its entries leave the sums.
                victim, lost = max(served.items(), key=lambda item: item[1])
                os.kill(victim, signal.SIGKILL)
                await log.wait_for(lambda lines: len(log.booted()) == 5, 90)
                workers = set(log.booted()) - {victim}
                await _scrape_every_worker(
                    client,
                    workers,
                    lambda found: (
                        found[_REQUESTS] == requests and found.get(_KEYS) == requests - lost
                    ),
                    log,
                )
        finally:
            process.terminate()
            with anyio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            tg.cancel_scope.cancel()
            await process.aclose()
