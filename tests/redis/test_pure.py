"""The I/O-free parts of the Redis subsystem: digests, messages, serializers, breaker, backlog."""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seerrperf import ConfigurationError, JsonSerializer, PickleSerializer
from seerrperf._keys import encode_key
from seerrperf._redis.breaker import Breaker
from seerrperf._redis.codec import serializer_argument
from seerrperf._redis.keyspace import Keyspace, Message, digest, parse_message
from seerrperf._redis.pending import Pending
from seerrperf.testing import FakeClock

# -- digests -------------------------------------------------------------------------


def test_digests_are_pinned() -> None:
    # Pinned: a change would make two releases of one fleet miss each other's entries.
    assert digest(("movie", 603)) == "86f074b5ded25b1fb6a5714c57a14979"
    assert digest(None) == "738096e476d3c5447c3cb95c39bfc964"
    assert (
        digest(("movie", 603))
        == hashlib.blake2b(encode_key(("movie", 603), "x"), digest_size=16).hexdigest()
    )


keys = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=12,
)


@given(keys, keys)
def test_different_keys_have_different_digests(a: Any, b: Any) -> None:
    # The encoding is injective: equal digests only for keys with equal encodings,
    # which means the same key (True and 1 differ, "a" and b"a" differ).
    if encode_key(a, "x") != encode_key(b, "x"):
        assert digest(a) != digest(b)
    else:
        assert digest(a) == digest(b)


def test_equal_python_keys_of_different_types_stay_apart() -> None:
    assert len({digest(k) for k in [1, True, "1", b"1", (1,), ((1,),), None, 0, False]}) == 9


def test_keyspace_names() -> None:
    names = Keyspace("app")
    assert names.entry("tmdb", "ab") == "app:v1:e:tmdb:ab"
    assert names.lease("tmdb", "ab") == "app:v1:l:tmdb:ab"
    assert names.generation("tmdb") == "app:v1:gen:tmdb"
    assert names.namespace_generation == "app:v1:gen"
    assert names.channel == "app:v1:inv"
    assert names.limiter("tmdb") == "app:v1:rl:tmdb"


# -- messages ------------------------------------------------------------------------


def test_messages_round_trip() -> None:
    for message in [
        Message("src", "keys", "tmdb", ("a" * 32, "b" * 32)),
        Message("src", "clear", "tmdb"),
        Message("src", "flush", None),
        Message("src", "wake", "tmdb", ("c" * 32,)),
    ]:
        assert parse_message(message.encode().encode()) == message


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v": 2, "s": "x", "o": "keys", "c": "t"}',
        b'{"v": 1, "s": 1, "o": "keys", "c": "t"}',
        b'{"v": 1, "s": "x", "o": "drop", "c": "t"}',
        b'{"v": 1, "s": "x", "o": "keys"}',
        b'{"v": 1, "s": "x", "o": "keys", "c": "t", "k": ["short"]}',
        b'{"v": 1, "s": "x", "o": "keys", "c": "t", "k": "' + b"a" * 32 + b'"}',
        b'{"v": 1, "s": "x", "o": "clear", "c": 5}',
        b"\xff\xfe",
    ],
)
def test_messages_from_peers_are_read_leniently(payload: bytes) -> None:
    assert parse_message(payload) is None


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_no_payload_makes_the_reader_raise(payload: bytes) -> None:
    parse_message(payload)


# -- serializers -------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_json_round_trips_what_it_accepts(value: Any) -> None:
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: "a"}, {"a": (1,)}, {1, 2}, float("nan"), float("inf"), object(), b"bytes"],
)
def test_json_refuses_what_would_come_back_different(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        JsonSerializer().dumps(value)


def test_json_is_compact_utf8() -> None:
    assert JsonSerializer().dumps({"a": ["é", 1]}) == '{"a":["é",1]}'.encode()


def test_pickle_is_opt_in_and_round_trips_anything_picklable() -> None:
    serializer = PickleSerializer()
    assert serializer.loads(serializer.dumps((1, {2}, b"x"))) == (1, {2}, b"x")
    assert pickle.loads(serializer.dumps([1])) == [1]  # noqa: S301 - our own bytes


def test_serializer_argument() -> None:
    assert isinstance(serializer_argument("json"), JsonSerializer)
    assert isinstance(serializer_argument("pickle"), PickleSerializer)

    class Custom:
        name = "custom"

        def dumps(self, value: Any) -> bytes:
            return json.dumps(value).encode()

        def loads(self, data: bytes) -> Any:
            return json.loads(data)

    custom = Custom()
    assert serializer_argument(custom) is custom
    for bad in ["yaml", None, 3, object()]:
        with pytest.raises(ConfigurationError, match="serializer must be"):
            serializer_argument(bad)


# -- the breaker -------------------------------------------------------------------------


def test_the_breaker_opens_on_failure_and_probes_once_per_interval() -> None:
    clock = FakeClock()
    breaker = Breaker(0.5, clock)
    assert breaker.admit() == "go"
    assert breaker.failed() is True
    assert breaker.failed() is False  # already open
    assert not breaker.closed
    assert breaker.admit() == "skip"
    clock.advance(0.5)
    assert breaker.admit() == "probe"
    assert breaker.admit() == "skip"  # one probe per interval
    assert breaker.failed() is False  # the probe failed: another interval
    clock.advance(0.4)
    assert breaker.admit() == "skip"
    clock.advance(0.1)
    assert breaker.admit() == "probe"
    assert breaker.succeeded("probe") == pytest.approx(1.0)
    assert breaker.admit() == "go"
    assert breaker.closed


def test_only_a_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    breaker.failed()
    assert breaker.succeeded("go") is None  # admitted before it opened: says nothing now
    assert not breaker.closed


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    breaker.failed()
    clock.advance(1.0)
    assert breaker.admit() == "probe"  # ...and its caller vanishes
    clock.advance(1.0)
    assert breaker.admit() == "probe"


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["admit", "fail", "succeed", "tick"]), max_size=40))
def test_the_breaker_never_admits_more_than_one_probe_per_interval(steps: list[str]) -> None:
    clock = FakeClock()
    breaker = Breaker(1.0, clock)
    probes: list[float] = []
    last = "go"
    for step in steps:
        if step == "admit":
            last = breaker.admit()
            if last == "probe":
                probes.append(clock())
            assert last in ("go", "probe", "skip")
            assert (last == "go") == breaker.closed or last != "go"
        elif step == "fail":
            breaker.failed()
        elif step == "succeed":
            breaker.succeeded(last)  # type: ignore[arg-type]
        else:
            clock.advance(0.3)
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(probes))


# -- the backlog of invalidations ------------------------------------------------------------


def test_the_backlog_merges_and_overflows_into_a_flush() -> None:
    pending = Pending(limit=3)
    assert not pending
    pending.delete("tmdb", ["a", "b"])
    pending.delete("tmdb", ["b"])
    pending.clear("tvdb")
    pending.delete("tvdb", ["c"])  # covered by the clear
    backlog = pending.take()
    assert not pending
    assert (backlog.flush, backlog.clears, backlog.deletes) == (
        False,
        {"tvdb"},
        {"tmdb": {"a", "b"}},
    )
    pending.delete("tmdb", ["a", "b", "c", "d"])
    assert pending.take().flush is True


def test_a_failed_replay_is_restored() -> None:
    pending = Pending()
    pending.delete("tmdb", ["a"])
    backlog = pending.take()
    pending.clear("tvdb")
    pending.restore(backlog)
    restored = pending.take()
    assert restored.deletes == {"tmdb": {"a"}}
    assert restored.clears == {"tvdb"}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["delete", "clear", "flush", "take"]),
            st.sampled_from(["tmdb", "tvdb"]),
            st.lists(st.sampled_from("abcdef"), max_size=4),
        ),
        max_size=30,
    )
)
def test_the_backlog_never_forgets_an_invalidation(
    steps: list[tuple[str, str, list[str]]],
) -> None:
    pending = Pending(limit=5)
    owed: set[tuple[str, str]] = set()  # (cache, key) a replay must still cover
    for op, cache, keys_ in steps:
        if op == "delete":
            pending.delete(cache, keys_)
            owed |= {(cache, k) for k in keys_}
        elif op == "clear":
            pending.clear(cache)
            owed |= {(cache, k) for k in "abcdef"}
        elif op == "flush":
            pending.flush()
            owed |= {(c, k) for c in ("tmdb", "tvdb") for k in "abcdef"}
        else:
            owed = set()
            pending.take()
    backlog = pending.take()
    covered = {
        (c, k)
        for c in ("tmdb", "tvdb")
        for k in "abcdef"
        if backlog.flush or c in backlog.clears or k in backlog.deletes.get(c, set())
    }
    assert owed <= covered
