"""Flask integration: the ``Seerrperf`` extension, configured from ``SEERRPERF_*`` keys.

::

    from flask import Flask
    from seerrperf import CacheControl
    from seerrperf.flask import Seerrperf, json_response

    app = Flask(__name__)
    app.config.from_mapping(SEERRPERF_TMDB_ACCESS_TOKEN=token)  # DSN: $DATABASE_URL
    sp = Seerrperf(app)  # outage 503s, no-store errors, body limit, safe redirects
    app.register_blueprint(sp.health_blueprint())  # /health/live, /health/ready

    @app.get("/movie/<int:movie_id>")
    def movie(movie_id: int):
        found = sp.tmdb.get_movie(movie_id)  # sync client: cached, coalesced, rate-limited
        return json_response({"title": found["title"]}, cache_control=CacheControl(max_age=60))

:class:`Seerrperf` checks the configuration in ``init_app`` and opens
nothing: the pool, the sync TMDB client and the lock are made in each process
on first use (after gunicorn's fork, ``--preload`` or not) and closed at exit.

Needs Flask (``pip install "seerrperf[flask]"``); the rest of seerrperf
never imports this module. The outage rules and the response parts are
framework-neutral and shared with the other integrations (``docs/outages.md``).
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401 - the guard below explains a missing Flask
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError('seerrperf.flask needs Flask: pip install "seerrperf[flask]"') from None

from seerrperf._web.config import DEFAULT_MAX_BODY_SIZE
from seerrperf._web.process import PerProcess

from ._config import PREFIX
from ._ext import EXTENSION_KEY, Lock, Seerrperf
from ._guard import WsgiGuard
from ._handlers import add_error_handlers
from ._responses import json_response

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "EXTENSION_KEY",
    "PREFIX",
    "Lock",
    "PerProcess",
    "Seerrperf",
    "WsgiGuard",
    "add_error_handlers",
    "json_response",
]
