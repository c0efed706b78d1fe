"""A bare WSGI app for the gunicorn test: one TmdbClient per process, made at import.

Under ``--preload`` the import -- and the TMDB request made there, which
leaves a pooled keep-alive connection -- happens in gunicorn's master before
it forks the workers: every worker then inherits the client. ``/movie/<id>``
asks TMDB (a FakeTmdb on a socket, ``$WSGI_TMDB_URL``) and answers with the
worker's pid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from seerrperf import TmdbClient

tmdb = TmdbClient(api_key="wsgi-test-key", base_url=os.environ["WSGI_TMDB_URL"], timeout=5)
tmdb.get_movie(603)  # in the master under --preload: a connection the workers must not share


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    if not path.startswith("/movie/"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    movie = tmdb.get_movie(int(path.removeprefix("/movie/")))
    body = f"{os.getpid()} {movie['id']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
