"""Django integration: an app for ``INSTALLED_APPS`` configured from ``SEERRPERF = {...}``.

::

    # settings.py
    from seerrperf.django import database_options

    INSTALLED_APPS = [..., "seerrperf.django"]
    MIDDLEWARE = ["seerrperf.django.SeerrperfMiddleware", ...]
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app",
                             "OPTIONS": database_options(max_size=4)}}
    SEERRPERF = {"TMDB_ACCESS_TOKEN": token, "HEALTH_TIMEOUT": 2.0}

    # urls.py
    urlpatterns = [path("health/", include("seerrperf.django.urls")), ...]

    # views.py
    import seerrperf.django as sp

    def movie(request, movie_id):
        found = sp.tmdb().get_movie(movie_id)  # sync client: cached, coalesced, rate-limited
        return sp.json_response({"title": found["title"]}, request=request,
                                cache_control=CacheControl(max_age=60))

The TMDB client and the lock are made in each process on first use (after
gunicorn's fork) and closed at exit; the ORM, readiness and the advisory lock
use Django's own connection and pool. Needs Django 5.1+ (``pip install
"seerrperf[django]"``); the rest of seerrperf never imports this package.
See ``docs/django.md``.
"""

from __future__ import annotations

try:
    import django as _django  # noqa: F401 - the guard below explains a missing Django
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError('seerrperf.django needs Django: pip install "seerrperf[django]"') from None

from seerrperf._web.process import PerProcess

from ._config import SETTING, DjangoConfig
from ._health import check_health, guard_pool
from ._lock import DjangoAdvisoryLock
from ._middleware import SeerrperfMiddleware, classify_django_outage
from ._options import database_options
from ._responses import json_response, problem_response
from ._state import Lock, caches, close, config, hold, lock, stats, tmdb

__all__ = [
    "SETTING",
    "DjangoAdvisoryLock",
    "DjangoConfig",
    "Lock",
    "PerProcess",
    "SeerrperfMiddleware",
    "caches",
    "check_health",
    "classify_django_outage",
    "close",
    "config",
    "database_options",
    "guard_pool",
    "hold",
    "json_response",
    "lock",
    "problem_response",
    "stats",
    "tmdb",
]
