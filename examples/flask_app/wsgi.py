"""``gunicorn flask_app.wsgi:app``: the app from the environment (see app.create_app)."""

from __future__ import annotations

from .app import create_app

app = create_app()
