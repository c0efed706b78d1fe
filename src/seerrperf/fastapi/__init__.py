"""FastAPI (and Starlette) integration: one object wires seerrperf into an app.

::

    from fastapi import FastAPI
    from seerrperf.fastapi import Pool, Seerrperf, Tmdb

    sp = Seerrperf.from_env()  # DATABASE_URL, TMDB_API_TOKEN
    app = FastAPI(lifespan=sp.lifespan)
    sp.install(app)  # outage 503s, no-store errors, body limit, safe redirects
    app.include_router(sp.health_router())  # /health/live, /health/ready

    @app.get("/movie/{movie_id}")
    async def movie(movie_id: int, tmdb: Tmdb) -> dict[str, object]:
        return await tmdb.get_movie(movie_id)

:class:`Seerrperf` checks its configuration when it is made and builds
nothing: the pool, the TMDB client and the locks are made in the app's
lifespan, i.e. in each worker process after any fork, and closed when it
ends. The caches (a :class:`~seerrperf.CacheManager`) exist from the start,
so ``@cached(sp.caches.get_cache(...))`` works at import time; they are
emptied when the lifespan ends.

Needs FastAPI (``pip install "seerrperf[fastapi]"``); the rest of seerrperf
never imports this module. Everything here works on a plain Starlette app
too (with FastAPI installed), except the ``Depends`` providers and
:func:`json_body`, which are FastAPI's. The outage rules and the response
parts are framework-neutral and shared with the other integrations; see
``docs/outages.md``.
"""

from __future__ import annotations

try:
    import fastapi as _fastapi  # noqa: F401 - the guard below explains a missing FastAPI
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError('seerrperf.fastapi needs FastAPI: pip install "seerrperf[fastapi]"') from None

from seerrperf._web.config import DEFAULT_MAX_BODY_SIZE
from seerrperf.starlette import json_response

from ._app import Seerrperf
from ._depends import AdvisoryLock, Caches, Lock, Pool, Tmdb, json_body
from ._handlers import add_exception_handlers
from ._middleware import GuardMiddleware

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "AdvisoryLock",
    "Caches",
    "GuardMiddleware",
    "Lock",
    "Pool",
    "Seerrperf",
    "Tmdb",
    "add_exception_handlers",
    "json_body",
    "json_response",
]
