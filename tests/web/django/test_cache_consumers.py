"""Django's own cache consumers on ``SeerrperfCache``: cache_page, sessions, override_settings.

They run in a fresh interpreter whose Django settings name this backend in
``CACHES`` (as a project's ``settings.py`` would), so that Django's
machinery -- ``django.core.cache.caches``, the cache middleware's response
pickling, the ``cache`` session engine -- finds it the way it does in an app,
and this process's settings stay untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys

RUN_DEADLINE = 60.0

SCRIPT = """
import json
import django
from django.conf import settings

settings.configure(
    CACHES={
        "default": {
            "BACKEND": "seerrperf.django.cache.SeerrperfCache",
            "LOCATION": "consumers",
            "OPTIONS": {"MAX_ENTRIES": 100},
        }
    },
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    INSTALLED_APPS=["django.contrib.sessions"],
    ALLOWED_HOSTS=["testserver"],
    USE_TZ=True,
)
django.setup()

from django.contrib.sessions.backends.cache import SessionStore
from django.core.cache import cache
from django.http import HttpResponse
from django.test import RequestFactory
from django.views.decorators.cache import cache_page

calls = []


@cache_page(60)
def view(request):
    calls.append(1)
    return HttpResponse(f"rendered {len(calls)}")


factory = RequestFactory()
first = view(factory.get("/movie/603"))
second = view(factory.get("/movie/603"))
other = view(factory.get("/movie/604"))

session = SessionStore()
session["user"] = 7
session.save()
loaded = SessionStore(session_key=session.session_key)

from django.core.cache import caches
from django.test import override_settings

stats = cache.stats().as_dict()
before = caches["default"].named_cache
smaller = {"default": {**settings.CACHES["default"], "OPTIONS": {"MAX_ENTRIES": 5}}}
with override_settings(CACHES=smaller):  # same LOCATION, other options: a new cache
    inside = caches["default"].named_cache
    caches["default"].set("only-inside", 1)
after = caches["default"].named_cache

print(json.dumps({
    "override": [before.maxsize, inside.maxsize, after.maxsize, after is inside],
    "after_override": after.get("only-inside") is None,
    "calls": len(calls),
    "first": first.content.decode(),
    "second": second.content.decode(),
    "other": other.content.decode(),
    "session_user": loaded["user"],
    "stats": stats,
}))
"""


def test_cache_page_and_cached_sessions_work_on_the_backend() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["calls"] == 2  # /movie/603 rendered once, then served from the cache
    assert seen["first"] == seen["second"] == "rendered 1"
    assert seen["other"] == "rendered 2"
    assert seen["session_user"] == 7
    assert seen["stats"]["hits"] >= 2  # the cached page (header key and page) and the session
    assert seen["stats"]["name"] == "consumers"
    # override_settings(CACHES=...) gives the LOCATION a new cache with the new
    # options, and another one again when the override ends.
    assert seen["override"] == [100, 5, 100, False]
    assert seen["after_override"] is True
