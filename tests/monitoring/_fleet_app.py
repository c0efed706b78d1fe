"""A bare WSGI app for the fleet test, one per gunicorn worker.

``/movie/<id>`` asks TMDB (a FakeTmdb on a socket, ``$FLEET_TMDB_URL``) for
one movie through the async client, on an event loop in a daemon thread
since the worker is sync; ``/metrics`` is the exporter's registry. Every answer names the
worker's pid in ``X-Worker-Pid``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import generate_latest

from seerrperf import TmdbClient
from seerrperf.prometheus import PrometheusExporter

_loop = asyncio.new_event_loop()
threading.Thread(target=_loop.run_forever, name="fleet-app-loop", daemon=True).start()
tmdb = TmdbClient(api_key="k", base_url=os.environ["FLEET_TMDB_URL"], max_rps=None)
exporter = PrometheusExporter(tmdb=tmdb, caches=[tmdb.cache], flush_interval=0.1)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    pid = str(os.getpid())
    if path == "/metrics":
        body = generate_latest(exporter.registry)
    elif path.startswith("/movie/"):
        movie = tmdb.get_movie(int(path.removeprefix("/movie/")))
        asyncio.run_coroutine_threadsafe(movie, _loop).result(timeout=60)
        body = pid.encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Worker-Pid", pid)])
    return [body]
