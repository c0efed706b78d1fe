"""A small media-request service on Flask and PostgreSQL, built with ``seerrperf.flask``.

``create_app(config)`` builds it; ``gunicorn flask_app.wsgi:app`` (from
``examples/``) serves it from the environment, after ``flask --app
flask_app.wsgi init-db`` created the tables. See ``docs/flask.md``.
"""

from __future__ import annotations

from .app import create_app, sp

__all__ = ["create_app", "sp"]
