"""What both twins promise alike: secrets, one lookup per hit, the 404 marker, image roots."""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

import httpx
import pytest

from seerrperf import (
    AsyncTmdbClient,
    ConfigurationError,
    NamedCache,
    TmdbClient,
    TmdbNotFound,
    TmdbResponseError,
    TmdbUnavailable,
    image_url,
)
from seerrperf.testing import FakeClock
from tests._support import SENTINEL

from ._upstream import AnyClient, Upstream, call, join_refreshes, make_twin

pytestmark = pytest.mark.anyio
twins = pytest.mark.parametrize("twin", ["sync", "async"])
HOUR = 3600


class LookupCountingCache(NamedCache):
    """Counts every locked lookup and records every key the client uses."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__("tmdb", clock=clock)
        self.lookups = 0
        self.keys: list[object] = []

    def get(self, key: Hashable, default: Any = None) -> Any:
        self.lookups += 1
        self.keys.append(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        self.keys.append(key)
        return super().__contains__(key)

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        self.keys.append(key)
        super().set(key, value, ttl)


async def settle(tmdb: AnyClient) -> None:
    """Let background refreshes finish: the sync ones on threads, the async ones as tasks."""
    if isinstance(tmdb, TmdbClient):
        join_refreshes()
    else:
        import anyio

        await anyio.wait_all_tasks_blocked()


@twins
async def test_a_hit_is_one_lookup_for_a_title_and_for_a_remembered_404(twin: str) -> None:
    clock = FakeClock(1000)
    cache = LookupCountingCache(clock)
    upstream = Upstream(
        lambda r: httpx.Response(404) if r.url.path.endswith("/404") else Upstream.movie(r)
    )
    tmdb = make_twin(twin, upstream, clock, cache=cache)
    await call(tmdb.get_movie(1))
    with pytest.raises(TmdbNotFound):
        await call(tmdb.get_movie(404))
    cache.lookups = 0
    for _ in range(10):
        assert (await call(tmdb.get_movie(1)))["id"] == 1
        with pytest.raises(TmdbNotFound):
            await call(tmdb.get_movie(404))
    assert cache.lookups == 20  # one per hit: the 404 lives in the same entry space
    assert upstream.total == 2  # a miss is still one upstream call
    assert tmdb.stats().not_found_cached == 10
    assert set(cache.keys) == {("/movie/1", ()), ("/movie/404", ())}


@twins
async def test_an_expired_404_waits_for_tmdb_instead_of_answering_from_memory(twin: str) -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    upstream.failing = 404
    tmdb = make_twin(twin, upstream, clock)
    with pytest.raises(TmdbNotFound):
        await call(tmdb.get_movie(5))
    upstream.failing = None  # the title appears on TMDB
    clock.advance(30)
    with pytest.raises(TmdbNotFound):
        await call(tmdb.get_movie(5))  # remembered for not_found_ttl (60 s)
    clock.advance(31)
    assert (await call(tmdb.get_movie(5)))["id"] == 5  # asked TMDB again, and waited
    await settle(tmdb)
    assert upstream.total == 2
    assert (await call(tmdb.get_movie(5)))["id"] == 5


@twins
async def test_a_404_for_a_known_title_is_not_served_stale_during_an_outage(twin: str) -> None:
    clock = FakeClock(1000)
    upstream = Upstream()
    tmdb = make_twin(twin, upstream, clock, max_retries=0)
    await call(tmdb.get_movie(1))
    upstream.failing = 404
    clock.advance(6 * HOUR + 3 * HOUR + 60)  # only stale-if-error could serve it now
    with pytest.raises(TmdbNotFound):
        await call(tmdb.get_movie(1))
    upstream.failing = 503
    with pytest.raises(TmdbNotFound):
        await call(tmdb.get_movie(1))  # the 404 is remembered even while TMDB is down


@twins
async def test_secrets_never_leak(twin: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(1000)
    cache = LookupCountingCache(clock)
    echo = Upstream(lambda r: httpx.Response(500, text=f"echo {r.url} {r.headers}"))
    tmdb = make_twin(twin, echo, clock, api_key=SENTINEL, cache=cache, max_retries=1)
    with pytest.raises(TmdbUnavailable) as failed:
        await call(tmdb.get_movie(1))
    gone = make_twin(twin, Upstream(lambda r: httpx.Response(404)), clock, api_key=SENTINEL)
    with pytest.raises(TmdbNotFound) as missing:
        await call(gone.get_movie(2))
    token = make_twin(twin, Upstream(), clock, api_key=None, access_token=SENTINEL, cache=cache)
    await call(token.get_movie(3))
    texts = [
        str(failed.value),
        repr(failed.value),
        str(missing.value),
        repr(tmdb),
        repr(token),
        repr(tmdb.stats()),
        caplog.text,
    ]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(key) for key in cache.keys]
    for text in texts:
        assert SENTINEL not in text
    assert "HTTP Request" in caplog.text  # httpx did log the requests, with the key masked
    assert cache.keys  # the keys were seen, and hold no credential


@twins
@pytest.mark.parametrize(
    "secret",
    [
        f"{SENTINEL}\u00e9",  # non-ASCII: each call used to raise UnicodeEncodeError with it
        f"{SENTINEL} x",
        f"{SENTINEL}\r\nX-Injected: 1",
        f"\t{SENTINEL}",
    ],
)
@pytest.mark.parametrize("kind", ["api_key", "access_token"])
def test_a_bad_credential_is_refused_at_construction_without_echo(
    twin: str, secret: str, kind: str
) -> None:
    cls: type[AnyClient] = TmdbClient if twin == "sync" else AsyncTmdbClient
    arguments: dict[str, Any] = {kind: secret}
    with pytest.raises(ConfigurationError) as info:
        cls(**arguments)
    assert kind in str(info.value)
    for text in (str(info.value), repr(info.value), repr(info.value.args)):
        assert SENTINEL not in text
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@twins
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_url": "https://api.themoviedb.org:99999/3"}, "port"),
        ({"base_url": "https://api.themoviedb.org/3\r\nX: y"}, "control characters"),
        ({"base_url": "https://api.themoviedb.org/3 x"}, "spaces"),
        ({"base_url": "https://api.the moviedb.org/3"}, "spaces"),
        ({"base_url": "ftp://x/3"}, "http"),
        ({"timeout": 0}, "timeout"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"max_body_bytes": 1.5}, "max_body_bytes"),
        ({"sleep": 1}, "sleep"),
        ({"clock": "now"}, "clock"),
        ({"http_client": "https://tmdb.test"}, "http_client"),
    ],
)
def test_bad_configuration(twin: str, kwargs: dict[str, Any], fragment: str) -> None:
    cls: type[AnyClient] = TmdbClient if twin == "sync" else AsyncTmdbClient
    with pytest.raises(ConfigurationError, match=fragment):
        cls(api_key="tmdb-test-key", **kwargs)


def test_each_twin_refuses_the_other_twins_http_client() -> None:
    with pytest.raises(ConfigurationError, match=r"http_client must be an httpx\.Client"):
        TmdbClient(api_key="tmdb-test-key", http_client=httpx.AsyncClient())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"http_client must be an httpx\.AsyncClient"):
        AsyncTmdbClient(api_key="tmdb-test-key", http_client=httpx.Client())  # type: ignore[arg-type]


def configuration(secure_base_url: object) -> Upstream:
    return Upstream(
        lambda r: httpx.Response(200, json={"images": {"secure_base_url": secure_base_url}})
    )


@twins
async def test_the_image_root_comes_from_configuration_and_is_cached(twin: str) -> None:
    upstream = configuration("https://images.example/t/p")
    tmdb = make_twin(twin, upstream)
    base = await call(tmdb.image_base_url())
    assert base == "https://images.example/t/p/"
    assert await call(tmdb.image_base_url()) == base
    assert upstream.total == 1  # cached with /configuration (24 h by default)
    assert image_url("/a.jpg", "w92", base_url=base) == "https://images.example/t/p/w92/a.jpg"


@twins
@pytest.mark.parametrize(
    "value",
    [
        None,
        5,
        "",
        "/relative/",
        "javascript:alert(1)",
        "https://x/t/p/\r\nSet-Cookie: a",
        "https://x/?q=1",
    ],
)
async def test_an_unusable_image_root_from_tmdb_is_a_response_error(
    twin: str, value: object
) -> None:
    tmdb = make_twin(twin, configuration(value))
    with pytest.raises(TmdbResponseError, match="secure_base_url"):
        await call(tmdb.image_base_url())
