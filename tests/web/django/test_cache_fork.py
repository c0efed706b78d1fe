"""``SeerrperfCache`` across a real fork (gunicorn ``--preload``): one cache per process.

The child is forked with multiprocessing's ``fork`` context while a thread
of the parent holds the backend registry's lock; the child must still make
its backends, keep its copy of the parent's entries, and write only to its
own memory.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from seerrperf.django import cache as django_cache
from seerrperf.django.cache import SeerrperfCache
from tests.cache.test_fork import CHILD_DEADLINE, in_child

from ._cache_settings import new_location

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def test_a_forked_child_has_its_own_cache_with_the_parents_entries() -> None:
    location = new_location("fork")
    parent = SeerrperfCache(location, {"OPTIONS": {"MAX_ENTRIES": 50}})
    parent.set("warm", {"from": "parent"})
    held = threading.Event()
    release = threading.Event()

    def hold_the_registry() -> None:
        with django_cache._REGISTRY._lock:
            held.set()
            assert release.wait(CHILD_DEADLINE)

    holder = threading.Thread(target=hold_the_registry, daemon=True)
    holder.start()
    assert held.wait(CHILD_DEADLINE)

    def child() -> dict[str, Any]:
        backend = SeerrperfCache(location, {"OPTIONS": {"MAX_ENTRIES": 50}})  # registry lock
        backend.set("n", 1)
        return {
            "same_cache": backend.named_cache is parent.named_cache,
            "warm": backend.get("warm"),
            "added": backend.add("child", "only here"),
            "loaded": backend.get_or_set("loaded", lambda: "in the child"),
            "incr": backend.incr("n"),
        }

    try:
        seen = in_child(child)
    finally:
        release.set()
        holder.join(CHILD_DEADLINE)
    assert seen == {
        "same_cache": True,
        "warm": {"from": "parent"},
        "added": True,
        "loaded": "in the child",
        "incr": 2,
    }
    assert parent.get_many(["child", "loaded", "n"]) == {}  # the child's writes stay there
    assert parent.get("warm") == {"from": "parent"}
