"""A bare WSGI app for the fleet test, one per gunicorn worker.

``/movie/<id>`` asks TMDB (a FakeTmdb on a socket, ``$FLEET_TMDB_URL``) for
one movie through the sync client (the worker is sync); ``/metrics`` is the
exporter's registry. Every answer names the worker's pid in ``X-Worker-Pid``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import generate_latest

from seerrperf import TmdbClient
from seerrperf.prometheus import PrometheusExporter

tmdb = TmdbClient(api_key="k", base_url=os.environ["FLEET_TMDB_URL"], max_rps=None)
exporter = PrometheusExporter(tmdb=tmdb, caches=[tmdb.cache], flush_interval=0.1)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    pid = str(os.getpid())
    if path == "/metrics":
        body = generate_latest(exporter.registry)
    elif path.startswith("/movie/"):
        tmdb.get_movie(int(path.removeprefix("/movie/")))
        body = pid.encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Worker-Pid", pid)])
    return [body]
