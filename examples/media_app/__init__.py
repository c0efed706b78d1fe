"""A small media-request service on FastAPI and PostgreSQL, built with seerrperf.

``create_app(Settings(...))`` builds it (``naive=True`` builds the same routes
without seerrperf's patterns, for comparison); ``serve(app)`` runs it under
uvicorn in the current event loop. ``python -m media_app`` (from
``examples/``) runs it from the environment. See ``docs/example-app.md``.
"""

from __future__ import annotations

from .app import create_app
from .server import serve
from .settings import Settings

__all__ = ["Settings", "create_app", "serve"]
