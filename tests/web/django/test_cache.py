"""``SeerrperfCache`` against the behaviours of Django's own cache backend test suite.

Ported from ``BaseCacheTests`` and ``LocMemCacheTests`` in Django's
``tests/cache/tests.py`` (github.com/django/django, main branch, read
December 2026): the same operations and the same expected answers, written
anew for pytest. Where Django sleeps to let entries expire, these tests move
a :class:`~seerrperf.testing.FakeClock`. Where this backend differs on
purpose (eviction is LRU one entry at a time, not a cull of a third), the
test says so. The caches come from Django's ``CacheHandler``, the code path
of ``django.core.cache.caches``.
"""

from __future__ import annotations

import pickle
import threading
import zlib
from typing import Any

import pytest
from django.core.cache import CacheKeyWarning  # type: ignore[import-untyped,unused-ignore]

from seerrperf import CacheLoadTimeout, ConfigurationError
from seerrperf.django.cache import SeerrperfCache
from seerrperf.testing import FakeClock

from ._cache_settings import BACKEND, caches_setting, handler, new_location

KEY_ERRORS_WITH_MEMCACHED_MSG = (
    "Cache key contains characters that will cause errors if used with memcached: %r"
)


# Module level, so that pickle finds them (Django's suite has the same two).
def f() -> int:
    return 42


class C:
    def m(self) -> int:
        return 24


class Unpicklable:
    def __getstate__(self) -> dict[str, Any]:
        raise pickle.PickleError


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def caches(clock: FakeClock) -> Any:
    return handler(caches_setting(clock))


@pytest.fixture
def cache(caches: Any) -> SeerrperfCache:
    backend: SeerrperfCache = caches["default"]
    return backend


# -- BaseCacheTests: get, set, add, delete ------------------------------------------


def test_simple(cache: SeerrperfCache) -> None:
    cache.set("key", "value")
    assert cache.get("key") == "value"


def test_default_used_when_none_is_set(cache: SeerrperfCache) -> None:
    cache.set("key_default_none", None)
    assert cache.get("key_default_none", default="default") is None


def test_add(cache: SeerrperfCache) -> None:
    assert cache.add("addkey1", "value") is True
    assert cache.add("addkey1", "newvalue") is False
    assert cache.get("addkey1") == "value"


def test_prefix(caches: Any) -> None:
    cache = caches["default"]
    cache.set("somekey", "value")
    assert caches["prefix"].has_key("somekey") is False
    caches["prefix"].set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert caches["prefix"].get("somekey") == "value2"


def test_non_existent(cache: SeerrperfCache) -> None:
    assert cache.get("does_not_exist") is None
    assert cache.get("does_not_exist", "bang!") == "bang!"


def test_get_many(cache: SeerrperfCache) -> None:
    cache.set_many({"a": "a", "b": "b", "c": "c", "d": "d"})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a", "b": "b"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a", "b": "b"}
    cache.set_many({"x": None, "y": 1})
    assert cache.get_many(["x", "y"]) == {"x": None, "y": 1}


def test_delete(cache: SeerrperfCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    assert cache.get("key1") == "spam"
    assert cache.delete("key1") is True
    assert cache.get("key1") is None
    assert cache.get("key2") == "eggs"


def test_delete_nonexistent(cache: SeerrperfCache) -> None:
    assert cache.delete("nonexistent_key") is False


def test_has_key(cache: SeerrperfCache) -> None:
    cache.set("hello1", "goodbye1")
    assert cache.has_key("hello1") is True
    assert cache.has_key("goodbye1") is False
    cache.set("no_expiry", "here", None)
    assert cache.has_key("no_expiry") is True
    cache.set("null", None)
    assert cache.has_key("null") is True


def test_in(cache: SeerrperfCache) -> None:
    cache.set("hello2", "goodbye2")
    assert "hello2" in cache
    assert "goodbye2" not in cache
    cache.set("null", None)
    assert "null" in cache


# -- incr / decr ----------------------------------------------------------------------


def test_incr(cache: SeerrperfCache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.get("answer") == 52
    assert cache.incr("answer", -10) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError, match="not found"):
        cache.incr("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")


def test_decr(cache: SeerrperfCache) -> None:
    cache.set("answer", 43)
    assert cache.decr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.decr("answer", 10) == 32
    assert cache.get("answer") == 32
    assert cache.decr("answer", -10) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.decr("does_not_exist")
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.decr("null")


def test_incr_decr_keep_the_expiry(cache: SeerrperfCache, clock: FakeClock) -> None:
    # LocMemCacheTests.test_incr_decr_timeout: incr/decr do not move the expiry.
    cache.set("value", 1, timeout=10)
    clock.advance(6)
    assert cache.incr("value") == 2
    assert cache.decr("value") == 1
    clock.advance(3.9)
    assert cache.get("value") == 1
    clock.advance(0.2)
    assert cache.get("value") is None
    with pytest.raises(ValueError, match="not found"):
        cache.incr("value")  # an expired key is a missing key


def test_close(cache: SeerrperfCache) -> None:
    cache.close()
    cache.set("still", "usable")
    assert cache.get("still") == "usable"


def test_data_types(cache: SeerrperfCache) -> None:
    tests: dict[str, Any] = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
        "function": f,
        "class": C,
    }
    for key, value in tests.items():
        cache.set(key, value)
        assert cache.get(key) == value, key


# -- expiry, with a fake clock instead of Django's sleeps ------------------------------


def test_expiration(cache: SeerrperfCache, clock: FakeClock) -> None:
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    clock.advance(2)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert cache.has_key("expire3") is False


def test_touch(cache: SeerrperfCache, clock: FakeClock) -> None:
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=4) is True
    clock.advance(2)
    assert cache.has_key("expire1") is True
    clock.advance(3)
    assert cache.has_key("expire1") is False
    # touch() without a timeout gives the default timeout (300 s).
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1") is True
    clock.advance(2)
    assert cache.has_key("expire1") is True
    clock.advance(299)
    assert cache.has_key("expire1") is False
    assert cache.touch("nonexistent") is False
    assert cache.touch("expire1") is False  # expired: nothing to touch


def test_unicode(cache: SeerrperfCache) -> None:
    stuff: dict[str, Any] = {
        "ascii": "ascii_value",
        "unicode_ascii": "Iñtërnâtiônàlizætiøn1",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
    }
    for key, value in stuff.items():
        cache.set(key, value)
        assert cache.get(key) == value
    for key, value in stuff.items():
        assert cache.delete(key) is True
        assert cache.add(key, value) is True
        assert cache.get(key) == value
    for key in stuff:
        assert cache.delete(key) is True
    cache.set_many(stuff)
    for key, value in stuff.items():
        assert cache.get(key) == value


def test_binary_string(cache: SeerrperfCache) -> None:
    value = "value_to_be_compressed"
    compressed = zlib.compress(value.encode())
    cache.set("binary1", compressed)
    assert zlib.decompress(cache.get("binary1")).decode() == value
    assert cache.add("binary1-add", compressed) is True
    assert cache.get("binary1-add") == compressed
    cache.set_many({"binary1-set_many": compressed})
    assert cache.get("binary1-set_many") == compressed


def test_set_many(cache: SeerrperfCache) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []
    assert cache.get("key1") == "spam"
    assert cache.get("key2") == "eggs"
    assert cache.set_many({}) == []


def test_set_many_expiration(cache: SeerrperfCache, clock: FakeClock) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
    clock.advance(2)
    assert cache.get("key1") is None
    assert cache.get("key2") is None


def test_delete_many(cache: SeerrperfCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    cache.delete_many(["key1", "key2"])
    assert cache.get("key1") is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"
    cache.delete_many([])  # no keys: nothing to do, no error


def test_clear(cache: SeerrperfCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"})
    cache.clear()
    assert cache.get("key1") is None
    assert cache.get("key2") is None


def test_long_timeout(cache: SeerrperfCache, clock: FakeClock) -> None:
    # Unlike memcached, a timeout over 30 days is a duration, not a timestamp.
    month = 60 * 60 * 24 * 30 + 1
    cache.set("key1", "eggs", month)
    assert cache.add("key2", "ham", month) is True
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, month)
    clock.advance(month - 1)
    assert cache.get_many(["key1", "key2", "key3", "key4"]) == {
        "key1": "eggs",
        "key2": "ham",
        "key3": "sausage",
        "key4": "lobster bisque",
    }


def test_forever_timeout(cache: SeerrperfCache, clock: FakeClock) -> None:
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.get("key2") == "ham"
    assert cache.add("key1", "new eggs", None) is False
    assert cache.get("key1") == "eggs"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    clock.advance(9 * 365 * 86_400)  # nine years on
    assert cache.get_many(["key1", "key2", "key3", "key4", "key5"]) == {
        "key1": "eggs",
        "key2": "ham",
        "key3": "sausage",
        "key4": "lobster bisque",
        "key5": "belgian fries",
    }


def test_zero_timeout(cache: SeerrperfCache) -> None:
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None
    assert cache.get("key4") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_negative_timeout_expires_at_once(cache: SeerrperfCache) -> None:
    cache.set("key1", "eggs")
    cache.set("key1", "spam", -1)
    assert cache.has_key("key1") is False


def test_float_timeout(cache: SeerrperfCache, clock: FakeClock) -> None:
    cache.set("key1", "spam", 100.2)
    clock.advance(100.1)
    assert cache.get("key1") == "spam"
    clock.advance(0.2)
    assert cache.get("key1") is None


def test_default_timeout_comes_from_the_settings(clock: FakeClock) -> None:
    setting = caches_setting(clock)
    setting["default"]["TIMEOUT"] = 10
    setting["forever"] = {**setting["prefix"], "TIMEOUT": None}
    caches = handler(setting)
    caches["default"].set("ten", 1)
    caches["forever"].set("forever", 1)
    assert caches["default"].default_timeout == 10
    clock.advance(10)
    assert caches["default"].get("ten") is None
    assert caches["forever"].get("forever") == 1


# -- MAX_ENTRIES: bounded, least recently used first ----------------------------------


def test_cull_keeps_max_entries(caches: Any) -> None:
    # Django's _perform_cull_test("cull", 50, 29): LocMemCache culls a third at a
    # time and keeps 29; this cache evicts one LRU entry at a time and keeps 30.
    cull = caches["cull"]
    for i in range(1, 50):
        cull.set(f"cull{i}", "value", 1000)
    kept = [i for i in range(1, 50) if cull.has_key(f"cull{i}")]
    assert kept == list(range(20, 50))
    assert cull.stats().evictions == 19


# LocMemCacheTests.test_lru_*: where LocMemCache culls a third of its 9 entries
# at once (3 keys gone), this cache evicts the one least recently used key.
@pytest.fixture
def nine(clock: FakeClock) -> SeerrperfCache:
    backend: SeerrperfCache = handler(caches_setting(clock, MAX_ENTRIES=9))["default"]
    return backend


def test_lru_get(nine: SeerrperfCache) -> None:
    for key in range(9):
        nine.set(key, key, timeout=None)
    for key in range(6):
        assert nine.get(key) == key
    nine.set(9, 9, timeout=None)  # evicts the least recently used: 6
    for key in range(6):
        assert nine.get(key) == key
    assert nine.get(6) is None
    assert [nine.get(key) for key in (7, 8, 9)] == [7, 8, 9]


def test_lru_set(nine: SeerrperfCache) -> None:
    for key in range(9):
        nine.set(key, key, timeout=None)
    for key in range(3, 9):
        nine.set(key, key, timeout=None)
    nine.set(9, 9, timeout=None)  # evicts the least recently used: 0
    for key in range(3, 10):
        assert nine.get(key) == key
    assert nine.get(0) is None
    assert [nine.get(key) for key in (1, 2)] == [1, 2]


def test_lru_incr(nine: SeerrperfCache) -> None:
    for key in range(9):
        nine.set(key, key, timeout=None)
    for key in range(6):
        assert nine.incr(key) == key + 1
    nine.set(9, 9, timeout=None)  # evicts the least recently used: 6
    for key in range(6):
        assert nine.get(key) == key + 1
    assert nine.get(6) is None
    assert [nine.get(key) for key in (7, 8, 9)] == [7, 8, 9]


def test_multiple_locations_are_isolated(clock: FakeClock) -> None:
    caches = handler(
        {
            "default": {"BACKEND": BACKEND, "LOCATION": new_location()},
            "other": {"BACKEND": BACKEND, "LOCATION": new_location("other")},
        }
    )
    caches["default"].set("value", 42)
    assert caches["default"].get("value") == 42
    assert caches["other"].get("value") is None


# -- key validation warnings ----------------------------------------------------------


def _operations(key: str) -> list[tuple[str, list[Any]]]:
    return [
        ("add", [key, 1]),
        ("get", [key]),
        ("set", [key, 1]),
        ("incr", [key]),
        ("decr", [key]),
        ("touch", [key]),
        ("delete", [key]),
        ("get_many", [[key, "b"]]),
        ("set_many", [{key: 1, "b": 2}]),
        ("delete_many", [[key, "b"]]),
    ]


def _perform_invalid_key_test(
    cache: SeerrperfCache, key: str, expected: str, key_func: Any = None
) -> None:
    cache.key_func = key_func or (lambda key, *args: key)
    for operation, args in _operations(key):
        with pytest.warns(CacheKeyWarning) as record:
            getattr(cache, operation)(*args)
        assert str(record[0].message) == expected, operation


def test_invalid_key_characters(cache: SeerrperfCache) -> None:
    key = "key with spaces and 清"
    _perform_invalid_key_test(cache, key, KEY_ERRORS_WITH_MEMCACHED_MSG % key)


def test_invalid_key_length(cache: SeerrperfCache) -> None:
    key = ("a" * 250) + "清"
    expected = f"Cache key will cause errors if used with memcached: {key!r} (longer than 250)"
    _perform_invalid_key_test(cache, key, expected)


def test_invalid_with_version_key_length(cache: SeerrperfCache) -> None:
    def key_func(key: str, *args: Any) -> str:
        return key + ":1"

    key = "a" * 249
    expected = (
        f"Cache key will cause errors if used with memcached: {key_func(key)!r} (longer than 250)"
    )
    _perform_invalid_key_test(cache, key, expected, key_func=key_func)


# -- versioning -------------------------------------------------------------------------


def test_cache_versioning_get_set(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42
    cache.set("answer2", 42, version=2)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=2) == 42
    assert v2.get("answer2") == 42
    assert v2.get("answer2", version=1) is None
    v2.set("answer3", 42)
    assert cache.get("answer3") is None
    assert cache.get("answer3", version=2) == 42
    v2.set("answer4", 42, version=1)
    assert cache.get("answer4") == 42
    assert v2.get("answer4") is None


def test_cache_versioning_add(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    assert cache.add("answer1", 42, version=2) is True
    assert cache.get("answer1", version=1) is None
    assert cache.get("answer1", version=2) == 42
    assert cache.add("answer1", 37, version=2) is False
    assert cache.add("answer1", 37, version=1) is True
    assert cache.get("answer1", version=1) == 37
    assert cache.get("answer1", version=2) == 42
    assert v2.add("answer2", 42) is True
    assert v2.add("answer2", 37) is False
    assert v2.add("answer2", 37, version=1) is True
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) == 42


def test_cache_versioning_has_key(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer1", 42)
    assert cache.has_key("answer1") is True
    assert cache.has_key("answer1", version=1) is True
    assert cache.has_key("answer1", version=2) is False
    assert v2.has_key("answer1") is False
    assert v2.has_key("answer1", version=1) is True


def test_cache_versioning_delete(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer1", 37, version=1)
    cache.set("answer1", 42, version=2)
    assert cache.delete("answer1") is True
    assert cache.get("answer1", version=1) is None
    assert cache.get("answer1", version=2) == 42
    cache.set("answer3", 37, version=1)
    cache.set("answer3", 42, version=2)
    assert v2.delete("answer3") is True
    assert cache.get("answer3", version=1) == 37
    assert cache.get("answer3", version=2) is None


def test_cache_versioning_incr_decr(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer1", 37, version=1)
    cache.set("answer1", 42, version=2)
    assert cache.incr("answer1") == 38
    assert cache.get("answer1", version=2) == 42
    assert cache.decr("answer1") == 37
    assert v2.incr("answer1") == 43
    assert cache.get("answer1", version=1) == 37
    assert v2.decr("answer1", version=1) == 36


def test_cache_versioning_get_set_many(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set_many({"ford1": 37, "arthur1": 42})
    assert cache.get_many(["ford1", "arthur1"]) == {"ford1": 37, "arthur1": 42}
    assert cache.get_many(["ford1", "arthur1"], version=2) == {}
    assert v2.get_many(["ford1", "arthur1"]) == {}
    assert v2.get_many(["ford1", "arthur1"], version=1) == {"ford1": 37, "arthur1": 42}
    v2.set_many({"ford3": 37, "arthur3": 42})
    assert cache.get_many(["ford3", "arthur3"]) == {}
    assert cache.get_many(["ford3", "arthur3"], version=2) == {"ford3": 37, "arthur3": 42}


def test_incr_version(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer", 42, version=2)
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42
    v2.set("answer2", 42)
    assert v2.incr_version("answer2") == 3
    assert v2.get("answer2") is None
    assert v2.get("answer2", version=3) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.incr_version("does_not_exist")
    cache.set("null", None)
    assert cache.incr_version("null") == 2
    assert cache.has_key("null", version=2) is True


def test_decr_version(caches: Any) -> None:
    cache, v2 = caches["default"], caches["v2"]
    cache.set("answer", 42, version=2)
    assert cache.decr_version("answer", version=2) == 1
    assert cache.get("answer") == 42
    assert cache.get("answer", version=2) is None
    v2.set("answer2", 42)
    assert v2.decr_version("answer2") == 1
    assert v2.get("answer2") is None
    assert v2.get("answer2", version=1) == 42
    with pytest.raises(ValueError, match="not found"):
        cache.decr_version("does_not_exist", version=2)


def test_custom_key_func(caches: Any) -> None:
    cache = caches["default"]
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert caches["custom_key"].get("answer1") is None
    assert caches["custom_key2"].get("answer1") is None
    caches["custom_key"].set("answer2", 42)
    assert cache.get("answer2") is None
    assert caches["custom_key"].get("answer2") == 42
    assert caches["custom_key2"].get("answer2") == 42  # the same function, by its dotted path


# -- pickling: isolation like LocMemCache, and outside the lock ------------------------------


def test_add_and_set_fail_on_pickle_error(cache: SeerrperfCache) -> None:
    with pytest.raises(pickle.PickleError):
        cache.add("unpicklable", Unpicklable())
    with pytest.raises(pickle.PickleError):
        cache.set("unpicklable", Unpicklable())
    assert cache.has_key("unpicklable") is False


class PicklingSideEffect:
    """Records whether the cache's lock was held while it was pickled."""

    def __init__(self, cache: SeerrperfCache) -> None:
        self.cache = cache
        self.locked: bool | None = None

    def __getstate__(self) -> dict[str, Any]:
        self.locked = self.cache.named_cache._lock.locked()
        return {}


def test_pickling_is_done_outside_the_lock(cache: SeerrperfCache) -> None:
    # LocMemCacheTests.test_locking_on_pickle (#20613/#18541).
    bad = PicklingSideEffect(cache)
    cache.set("set", bad)
    assert bad.locked is False
    bad.locked = None
    assert cache.add("add", bad) is True
    assert bad.locked is False


def test_mutating_a_returned_value_does_not_change_the_cache(cache: SeerrperfCache) -> None:
    value = {"ids": [1, 2]}
    cache.set("k", value)
    value["ids"].append(3)  # after set: the cache holds a copy
    got = cache.get("k")
    got["ids"].append(4)  # after get: each read is a copy
    assert cache.get("k") == {"ids": [1, 2]}
    assert cache.get_or_set("k", dict) == {"ids": [1, 2]}


def test_pickle_off_stores_the_objects_themselves(clock: FakeClock) -> None:
    cache: SeerrperfCache = handler(caches_setting(clock, PICKLE=False))["default"]
    value = {"ids": [1, 2]}
    cache.set("k", value)
    assert cache.get("k") is value
    unpicklable = Unpicklable()
    cache.set("u", unpicklable)
    assert cache.get("u") is unpicklable
    assert cache.get_or_set("loaded", lambda: value) is value
    cache.set("n", 1)
    assert cache.incr("n", 2) == 3


# -- get_or_set -------------------------------------------------------------------------


def test_get_or_set(cache: SeerrperfCache) -> None:
    assert cache.get("projector") is None
    assert cache.get_or_set("projector", 42) == 42
    assert cache.get("projector") == 42
    assert cache.get_or_set("null", None) is None
    assert cache.get("null", "default") is None  # None was stored


def test_get_or_set_callable(cache: SeerrperfCache) -> None:
    def my_callable() -> str:
        return "value"

    assert cache.get_or_set("mykey", my_callable) == "value"
    assert cache.get_or_set("mykey", my_callable()) == "value"
    assert cache.get_or_set("null", lambda: None) is None
    assert cache.get("null", "default") is None


def test_get_or_set_version(cache: SeerrperfCache) -> None:
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    with pytest.raises(TypeError, match="default"):
        cache.get_or_set("brian")  # type: ignore[call-arg]
    assert cache.get("brian", version=1) is None
    assert cache.get_or_set("brian", 42, version=1) == 42
    assert cache.get_or_set("brian", 1979, version=2) == 1979
    assert cache.get("brian", version=3) is None


def test_get_or_set_uses_the_timeout(cache: SeerrperfCache, clock: FakeClock) -> None:
    assert cache.get_or_set("k", "first", timeout=5) == "first"
    clock.advance(5)
    assert cache.get_or_set("k", "second", timeout=0) == "second"  # returned, not stored
    assert cache.has_key("k") is False


@pytest.mark.parametrize("pickled", [True, False])
def test_get_or_set_refuses_an_async_default(clock: FakeClock, pickled: bool) -> None:
    cache: SeerrperfCache = handler(caches_setting(clock, PICKLE=pickled))["default"]

    async def fetch() -> str:
        return "never awaited"

    with pytest.raises(ConfigurationError, match="use aget_or_set"):
        cache.get_or_set("k", fetch)
    assert cache.has_key("k") is False


def test_get_or_set_does_not_cache_an_exception(cache: SeerrperfCache) -> None:
    def failing() -> str:
        raise LookupError("upstream down")

    with pytest.raises(LookupError, match="upstream down"):
        cache.get_or_set("k", failing)
    assert cache.has_key("k") is False
    assert cache.get_or_set("k", "ok") == "ok"


def test_stale_while_revalidate_serves_the_stale_value_once_expired(clock: FakeClock) -> None:
    cache: SeerrperfCache = handler(caches_setting(clock, STALE_WHILE_REVALIDATE=30))["default"]
    refreshed = threading.Event()

    def load() -> str:
        refreshed.set()
        return "new"

    assert cache.get_or_set("k", "old", timeout=10) == "old"
    clock.advance(11)
    assert cache.get("k") is None  # stale is absent to get(), as in Django
    assert cache.get_or_set("k", load, timeout=10) == "old"  # served stale, refresh started
    assert refreshed.wait(timeout=10)
    assert cache.stats().stale_hits == 1


# -- stats, settings and options ---------------------------------------------------------


def test_stats_count_lookups_of_the_shared_cache(caches: Any) -> None:
    cache = caches["default"]
    cache.set("a", 1)
    cache.get("a")
    cache.get("missing")
    caches["prefix"].get_many(["a", "b"])  # two more misses, on the same NamedCache
    cache.get_or_set("c", 3)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.loads, stats.keys) == (1, 4, 1, 2)
    assert caches["v2"].stats() == stats
    assert stats.name == cache.named_cache.name


def test_aliases_sharing_a_location_must_agree_on_the_options(clock: FakeClock) -> None:
    setting = caches_setting(clock)
    setting["bigger"] = {**setting["default"], "OPTIONS": {"CLOCK": clock, "MAX_ENTRIES": 5}}
    caches = handler(setting)
    caches["default"].set("a", 1)
    with pytest.raises(ConfigurationError, match=r"MAX_ENTRIES=5 \(it has 300\)"):
        caches["bigger"]


def _backend(**params: Any) -> SeerrperfCache:
    return SeerrperfCache(new_location(), params)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"OPTIONS": {"MAX_ENTRIES": 0}}, "MAX_ENTRIES must be >= 1"),
        ({"OPTIONS": {"MAX_ENTRIES": "300"}}, "MAX_ENTRIES must be an integer"),
        ({"OPTIONS": {"CULL_FREQUENCY": 3}}, "CULL_FREQUENCY: this cache evicts"),
        ({"OPTIONS": {"MAX_ENTRY": 3}}, "unknown keys MAX_ENTRY"),
        ({"OPTIONS": {"PICKLE": 1}}, "PICKLE must be True or False"),
        ({"OPTIONS": {"STALE_WHILE_REVALIDATE": -1}}, "STALE_WHILE_REVALIDATE must be finite"),
        ({"OPTIONS": {"LOAD_TIMEOUT": 0}}, "LOAD_TIMEOUT must be finite and > 0"),
        ({"OPTIONS": {"CLOCK": 3}}, "CLOCK must be a clock"),
        ({"OPTIONS": {"SHARED": {"URL": "redis://x"}}}, "SHARED must be a string"),
        ({"OPTIONS": {"SHARED": "http://cache:6379"}}, "SHARED must be a Redis URL"),
        ({"OPTIONS": ["MAX_ENTRIES"]}, "OPTIONS must be a dict"),
        ({"TIMEOUT": "300"}, "TIMEOUT must be a number of seconds or None"),
        ({"TIMEOUT": -1}, "TIMEOUT must be >= 0 or None"),
        ({"TIMEOUT": float("nan")}, "TIMEOUT must be a number of seconds or None"),
    ],
)
def test_bad_settings_are_refused_by_name(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _backend(**params)


def test_a_password_in_the_shared_url_is_never_shown() -> None:
    secret = "s3cr3t-sentinel"
    for bad in (f"http://:{secret}@redis.internal/0", f"redis://:{secret}@redis internal/0"):
        with pytest.raises(ConfigurationError) as caught:
            _backend(OPTIONS={"SHARED": bad})
        assert secret not in str(caught.value)
    location = new_location()
    backend = SeerrperfCache(location, {"OPTIONS": {"SHARED": f"redis://:{secret}@127.0.0.1:1/0"}})
    assert secret not in repr(backend)
    assert secret not in repr(backend.named_cache)
    with pytest.raises(ConfigurationError) as caught:  # a clash names SHARED, not the URL
        SeerrperfCache(location, {"OPTIONS": {"SHARED": f"redis://:{secret}-2@127.0.0.1:1/0"}})
    assert "another SHARED" in str(caught.value)
    assert secret not in str(caught.value)


def test_bad_call_timeouts_are_refused(cache: SeerrperfCache) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a number of seconds or None"):
        cache.set("k", 1, timeout="60")
    with pytest.raises(ConfigurationError, match="timeout must be a number of seconds or None"):
        cache.add("k", 1, timeout=True)
    cache.set("k", 1, timeout=10**30)  # beyond ten years: forever
    assert cache.get("k") == 1


def test_location_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="LOCATION must be a string"):
        SeerrperfCache(["a"], {})  # type: ignore[arg-type]


def test_name_defaults_to_the_location_and_can_be_set() -> None:
    location = new_location()
    assert SeerrperfCache(location, {}).stats().name == location
    named = SeerrperfCache(new_location(), {"OPTIONS": {"NAME": "pages"}})
    assert named.stats().name == "pages"
    assert "pages" in repr(named)


def test_stale_if_error_serves_the_stale_value_when_the_load_fails(clock: FakeClock) -> None:
    cache: SeerrperfCache = handler(caches_setting(clock, STALE_IF_ERROR=60))["default"]

    def failing() -> str:
        raise LookupError("upstream down")

    assert cache.get_or_set("k", "old", timeout=10) == "old"
    clock.advance(30)
    assert cache.get_or_set("k", failing, timeout=10) == "old"
    clock.advance(41)  # past the window: the failure is raised
    with pytest.raises(LookupError, match="upstream down"):
        cache.get_or_set("k", failing, timeout=10)


def test_waiters_of_a_hung_load_get_cache_load_timeout(clock: FakeClock) -> None:
    cache: SeerrperfCache = handler(caches_setting(clock, LOAD_TIMEOUT=0.2))["default"]
    entered = threading.Event()
    release = threading.Event()

    def hung() -> str:
        entered.set()
        assert release.wait(30)
        return "late"

    leader = threading.Thread(target=lambda: cache.get_or_set("k", hung))
    leader.start()
    try:
        assert entered.wait(30)
        with pytest.raises(CacheLoadTimeout, match=r"load_timeout of 0\.2 s"):
            cache.get_or_set("k", hung)  # joins the load, waits 0.2 s at most
    finally:
        release.set()
        leader.join(30)
    assert not leader.is_alive()
    assert cache.stats().load_timeouts == 1
    assert cache.has_key("k") is False  # the late result is not stored


def test_settings_checked_once_are_still_told_apart_by_type() -> None:
    # Backends are made per thread and per async task from copies of the same
    # settings, which are checked once; True == 1, but TIMEOUT=True is refused.
    location = new_location()
    assert SeerrperfCache(location, {"TIMEOUT": 1}).default_timeout == 1
    assert SeerrperfCache(location, {"TIMEOUT": 1}).named_cache is (
        SeerrperfCache(location, {"TIMEOUT": 1.0}).named_cache
    )
    with pytest.raises(ConfigurationError, match="TIMEOUT must be a number of seconds"):
        SeerrperfCache(location, {"TIMEOUT": True})
    with pytest.raises(ConfigurationError, match="MAX_ENTRIES=7"):  # and every time
        SeerrperfCache(location, {"OPTIONS": {"MAX_ENTRIES": 7}})
    with pytest.raises(ConfigurationError, match="MAX_ENTRIES=7"):
        SeerrperfCache(location, {"OPTIONS": {"MAX_ENTRIES": 7}})
