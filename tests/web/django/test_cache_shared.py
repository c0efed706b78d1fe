"""``SeerrperfCache`` with ``OPTIONS["SHARED"]`` on a real Valkey: two members of a fleet.

Two LOCATIONs with the same NAME and SHARED URL in one process are two
NamedCaches on two RedisBackends (each with its own source id and
subscriber): what one does reaches the other through Redis, as between
worker processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from seerrperf._redis.backend import RedisBackend
from seerrperf.django.cache import SeerrperfCache
from tests.redis._support import wait_until

from ._cache_settings import new_location

_names = itertools.count()


@pytest.fixture
def fleet(redis_url: str) -> Iterator[tuple[SeerrperfCache, SeerrperfCache]]:
    name = f"django-shared-{next(_names)}"
    options = {"SHARED": redis_url, "NAME": name}
    members = (
        SeerrperfCache(new_location("a"), {"OPTIONS": options}),
        SeerrperfCache(new_location("b"), {"OPTIONS": options}),
    )
    backends: list[RedisBackend] = []
    for member in members:
        tier = member.named_cache.shared
        assert tier is not None
        backends.append(tier.backend)
    # A cache's first resync (when its backend subscribes) drops its local tier.
    wait_until(
        lambda: all(b.stats().subscribed and b.stats().resyncs >= 1 for b in backends),
        what="subscribed",
    )
    try:
        yield members
    finally:
        for member, backend in zip(members, backends, strict=True):
            member.named_cache.close()
            backend.close()


def test_a_value_set_by_one_member_is_read_by_the_other(
    fleet: tuple[SeerrperfCache, SeerrperfCache],
) -> None:
    ours, theirs = fleet
    ours.set("movie:603", {"title": "The Matrix"}, 60)
    assert theirs.get("movie:603") == {"title": "The Matrix"}
    assert theirs.stats().shared_hits == 1
    assert theirs.has_key("missing") is False


def test_get_or_set_loads_once_for_the_fleet(
    fleet: tuple[SeerrperfCache, SeerrperfCache],
) -> None:
    ours, theirs = fleet
    calls: list[str] = []

    def load(who: str) -> dict[str, int]:
        calls.append(who)
        return {"id": 7}

    assert ours.get_or_set("movie:7", lambda: load("ours"), 60) == {"id": 7}
    assert theirs.get_or_set("movie:7", lambda: load("theirs"), 60) == {"id": 7}
    assert calls == ["ours"]


def test_add_sees_the_other_members_value_and_delete_reaches_it(
    fleet: tuple[SeerrperfCache, SeerrperfCache],
) -> None:
    ours, theirs = fleet
    assert ours.add("claim:603", "ours", 60) is True
    assert theirs.add("claim:603", "theirs", 60) is False  # read from the shared tier first
    assert theirs.get("claim:603") == "ours"  # now held locally by theirs too
    assert ours.delete("claim:603") is True
    wait_until(lambda: theirs.get("claim:603") is None, what="the delete's invalidation")
    ours.set("n", 1, 60)
    assert theirs.incr("n", 2) == 3
    wait_until(lambda: ours.get("n") == 3, what="the increment published")


@pytest.mark.anyio
async def test_the_async_methods_go_through_the_shared_tier(
    fleet: tuple[SeerrperfCache, SeerrperfCache],
) -> None:
    ours, theirs = fleet
    await ours.aset("k", [1, 2], 60)
    assert await theirs.aget("k") == [1, 2]
    assert await theirs.aadd("k", "other") is False
    assert await ours.aget_or_set("g", lambda: "loaded", 60) == "loaded"
    assert await theirs.aget_or_set("g", lambda: "again", 60) == "loaded"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_without_redis_the_cache_works_locally() -> None:
    down = SeerrperfCache(new_location("down"), {"OPTIONS": {"SHARED": "redis://127.0.0.1:1/0"}})
    try:
        down.set("k", "v")
        assert down.get("k") == "v"
        assert down.add("k", "w") is False
        assert down.get_or_set("g", lambda: 5) == 5
    finally:
        tier = down.named_cache.shared
        assert tier is not None
        down.named_cache.close()
        tier.backend.close()
