"""Worker processes for the multiprocess tests: ``python -m tests.monitoring._scenarios NAME ...``.

Each runs in a fresh interpreter with ``PROMETHEUS_MULTIPROC_DIR`` set before
prometheus_client is imported, as a real worker would, and prints what the
test checks on stdout.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator

import anyio
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from seerrperf import AsyncTmdbClient, NamedCache
from seerrperf.prometheus import PrometheusExporter, SeerrperfCollector


def _tmdb() -> AsyncTmdbClient:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"id": 1}))
    return AsyncTmdbClient(
        api_key="k", http_client=httpx.AsyncClient(transport=transport), max_rps=None
    )


def _requests(tmdb: AsyncTmdbClient, first: int, count: int) -> None:
    async def run() -> None:
        for movie in range(first, first + count):
            await tmdb.get_movie(movie)

    anyio.run(run)


def _hits(cache: NamedCache, count: int) -> None:
    cache.set("k", 1)
    for _ in range(count):
        cache.get("k")


def _files_only() -> str:
    """The directory as another worker's scrape sees it (no copy from this process)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    # A file this process's thread is creating can still be empty (see _Fleet).
    files = [f for f in glob.glob(os.path.join(directory, "*.db")) if os.path.getsize(f)]
    registry = CollectorRegistry()
    registry.register(_Merged(files))
    return generate_latest(registry).decode()


class _Merged(Collector):
    def __init__(self, files: list[str]) -> None:
        self._files = files

    def collect(self) -> Iterator[Metric]:
        return iter(MultiProcessCollector.merge(self._files))  # type: ignore[no-untyped-call]


def count(hits: str, requests: str) -> None:
    """Count, then end normally: the exit copies the figures (no flush call)."""
    cache = NamedCache("c")
    tmdb = _tmdb()
    PrometheusExporter(caches=cache, tmdb=tmdb, flush_interval=None)
    _hits(cache, int(hits))
    _requests(tmdb, 1, int(requests))


def scrape() -> None:
    """Scrape as a live worker that holds one key of its own."""
    cache = NamedCache("c")
    cache.set("mine", 1)
    exporter = PrometheusExporter(caches=cache, flush_interval=None)
    sys.stdout.write(generate_latest(exporter.registry).decode())


def fork() -> None:
    """gunicorn --preload: count in the parent, fork, count in the child.

    The child copies its figures only through the background thread, which
    must have restarted after the fork; the parent's are not counted twice.
    """
    cache = NamedCache("c")
    exporter = PrometheusExporter(caches=cache, flush_interval=0.05)
    _hits(cache, 3)
    pid = os.fork()
    if pid == 0:
        _hits(cache, 2)
        restarted = "seerrperf-metrics" in {thread.name for thread in threading.enumerate()}
        pause = threading.Event()
        for _ in range(400):  # 20 s at most
            if _hits_in_files() == 5:  # the parent's 3 and these 2
                os._exit(0 if restarted else 2)
            pause.wait(0.05)
        print(f"the files show {_hits_in_files()} hits", file=sys.stderr)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    exporter.flush()
    print(json.dumps({"child_status": os.waitstatus_to_exitcode(status), "text": _files_only()}))


def _hits_in_files() -> float:
    for line in _files_only().splitlines():
        if line.startswith('seerrperf_cache_hits_total{cache="c"}'):
            return float(line.split()[-1])
    return 0.0


def overflow(requests: str) -> None:
    """More upstream calls between two copies than the recent window holds."""
    tmdb = _tmdb()
    exporter = PrometheusExporter(tmdb=tmdb, flush_interval=None)
    local = CollectorRegistry()
    local.register(SeerrperfCollector(tmdb=tmdb))
    _requests(tmdb, 1, int(requests))
    first = (generate_latest(exporter.registry).decode(), generate_latest(local).decode())
    _requests(tmdb, int(requests) + 1, 10)
    second = (generate_latest(exporter.registry).decode(), generate_latest(local).decode())
    print(json.dumps({"first": first, "second": second}))


if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    scenarios: dict[str, Callable[..., None]] = {
        "count": count,
        "scrape": scrape,
        "fork": fork,
        "overflow": overflow,
    }
    scenarios[name](*arguments)
