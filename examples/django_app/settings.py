"""Settings from the environment.

- ``DATABASE_URL`` (required): a libpq URI or DSN, read into ``DATABASES``.
- ``DJANGO_DB_POOL``: ``1`` (default) uses Django's psycopg pool, ``0`` one
  connection per thread; ``DJANGO_CONN_HEALTH_CHECKS``: ``1`` or ``0`` (default).
- ``TMDB_API_TOKEN`` (a TMDB v4 read access token), ``TMDB_BASE_URL``,
  ``IMAGE_BASE_URL``, ``SEERRPERF_HEALTH_TIMEOUT``, ``ADMIN_TOKEN``.
- ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS`` (comma-separated).
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from seerrperf.django import database_options

_db = conninfo_to_dict(os.environ["DATABASE_URL"])
_pooled = os.environ.get("DJANGO_DB_POOL", "1") == "1"

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django_app-demo-only")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
INSTALLED_APPS = ["django_app", "seerrperf.django"]
MIDDLEWARE = [
    "seerrperf.django.SeerrperfMiddleware",  # first: 503 for outages, no-store errors
    "django_app.views.start_exporting",
]
ROOT_URLCONF = "django_app.urls"
WSGI_APPLICATION = "django_app.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "postgres"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        # connect and statement timeouts, keepalives, and Django's pool sized per worker
        "OPTIONS": database_options(
            pool=_pooled, min_size=1, max_size=4, application_name="django_app"
        ),
        "CONN_HEALTH_CHECKS": os.environ.get("DJANGO_CONN_HEALTH_CHECKS", "0") == "1",
    }
}

SEERRPERF = {
    "TMDB_ACCESS_TOKEN": os.environ.get("TMDB_API_TOKEN") or None,
    "TMDB_BASE_URL": os.environ.get("TMDB_BASE_URL") or None,
    "HEALTH_TIMEOUT": float(os.environ.get("SEERRPERF_HEALTH_TIMEOUT", "2.0")),
    "MAX_BODY_SIZE": 16 * 1024,  # the largest body this app takes is ~50 bytes
}

IMAGE_BASE_URL = os.environ.get("IMAGE_BASE_URL", "https://image.tmdb.org/t/p")
ADMIN_TOKEN = os.environ.get("ADMIN_TOKEN") or None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"seerrperf": {"handlers": ["console"], "level": "WARNING"}},
}
