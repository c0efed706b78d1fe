"""Django, configured once per test process on the session's PostgreSQL, for in-process tests.

Django's settings can be configured once per process: the ``django_project``
fixture does it the first time a test asks, with ``DATABASES["default"]``
on ``postgres_dsn`` through Django's own psycopg pool
(``database_options()``) and ``DATABASES["direct"]`` without a pool.
Tests that need a server of their own (stopped, frozen) run Django in real
server processes instead (``test_example.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg.conninfo
import pytest

from seerrperf.testing import FakeTmdb

TOKEN = "django-tmdb-token"


def database(dsn: str, **options: Any) -> dict[str, Any]:
    """A ``DATABASES`` entry for a libpq DSN."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
        "OPTIONS": options,
    }


@pytest.fixture(scope="session")
def fake_tmdb() -> Iterator[tuple[FakeTmdb, str]]:
    """A FakeTmdb served from a thread of its own (the sync client needs a real socket)."""
    fake = FakeTmdb(access_token=TOKEN)
    with fake.serve_in_thread() as base_url:
        yield fake, base_url


@pytest.fixture(scope="session")
def django_project(postgres_dsn: str, fake_tmdb: tuple[FakeTmdb, str]) -> Iterator[None]:
    """Configure Django for this process (once) with seerrperf.django installed."""
    import django
    from django.conf import settings

    from seerrperf.django import database_options

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            ALLOWED_HOSTS=["testserver", "127.0.0.1"],
            INSTALLED_APPS=["django.contrib.contenttypes", "seerrperf.django"],
            MIDDLEWARE=["seerrperf.django.SeerrperfMiddleware"],
            ROOT_URLCONF="tests.web.django.urls",
            DATABASES={
                "default": database(
                    postgres_dsn, **database_options(min_size=1, max_size=4, timeout=2.0)
                ),
                "direct": database(postgres_dsn, **database_options(pool=False)),
                "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
            },
            SEERRPERF={
                "TMDB_ACCESS_TOKEN": TOKEN,
                "TMDB_BASE_URL": fake_tmdb[1],
                "HEALTH_TIMEOUT": 1.0,
                "MAX_BODY_SIZE": 1024,
            },
            USE_TZ=True,
            SECRET_KEY="tests-only",
        )
        django.setup()
    yield
    from seerrperf import django as sp

    sp.close()
