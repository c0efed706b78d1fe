"""FakeTmdb: a deterministic stand-in for the TMDB v3 API and its image CDN.

The JSON comes from the catalogue (:mod:`._tmdb_catalogue`), a pure function
of the request. This module adds what a real upstream does to a client:
authentication, latency, errors, rate limiting and outages -- each a knob
that can be set at construction and changed while requests run -- plus
request counters. It serves through an ``httpx.MockTransport`` or a real
HTTP/1.1 server on 127.0.0.1, from async code (:meth:`FakeTmdb.serve`) or
from sync code, on an event loop of its own in a thread
(:meth:`FakeTmdb.serve_in_thread`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload
from urllib.parse import parse_qsl, unquote, urlsplit

import anyio
import anyio.from_thread
import cachetools
import httpx

from seerrperf import _validate

from ._http_server import HttpServer, Reply
from ._tmdb_catalogue import MAX_ID_LIMIT, NOT_FOUND, Catalogue, Json, error_body, image_bytes

__all__ = ["TMDB_IMAGES_BASE_URL", "FakeTmdb", "FakeTmdbStats"]

TMDB_IMAGES_BASE_URL = "https://image.tmdb.org/t/p/"
_API_PREFIX = "/3"
_IMAGES_PREFIX = "/t/p/"
_JSON_TYPE = "application/json;charset=utf-8"
_IMAGE_CACHE_CONTROL = "public, max-age=31536000"
_UNAUTHORISED = error_body(7, "Invalid API key: You must be granted a valid key.")
_RATE_LIMITED = error_body(25, "Your request count (#) is over the allowed limit of (40).")
_INTERNAL_ERROR = error_body(11, "Internal error: Something went wrong, contact TMDB.")
_OFFLINE = error_body(9, "Service offline: This service is temporarily offline, try again later.")
_BAD_METHOD = error_body(42, "Invalid request method: This resource does not support it.")
# Responses are a pure function of the path and query, so their JSON is kept.
_BODY_CACHE_SIZE = 4096

_T = TypeVar("_T")


def _json_reply(status: int, body: Json | list[Json], *extra: tuple[str, str]) -> Reply:
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, (("content-type", _JSON_TYPE), *extra), encoded)


class _Knob(Generic[_T]):
    """A validated attribute that is both a constructor keyword and a property."""

    def __init__(self, check: Callable[[str, object], _T], doc: str) -> None:
        self._check = check
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._attribute = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _Knob[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> _Knob[_T] | _T:
        if instance is None:
            return self
        value: _T = getattr(instance, self._attribute)
        return value

    def __set__(self, instance: object, value: _T) -> None:
        setattr(instance, self._attribute, self._check(self._name, value))


@dataclass(frozen=True, slots=True)
class FakeTmdbStats:
    """A snapshot of :class:`FakeTmdb`'s counters.

    Attributes:
        total_requests: Requests received (every status, images included).
        requests_by_path: Requests per URL path without the query, e.g.
            ``"/3/movie/603"`` or ``"/t/p/w500/abc.jpg"``; a ``Counter``, so
            paths never requested count 0.
        responses_by_status: Responses sent per HTTP status.
        in_flight: Requests being answered right now (inside their latency).
        peak_in_flight: Most requests in flight at once.
        connections: TCP connections accepted by :meth:`FakeTmdb.serve`
            servers (keep-alive reuse shows as fewer connections than requests).
    """

    total_requests: int
    requests_by_path: Counter[str]
    responses_by_status: Counter[int]
    in_flight: int
    peak_in_flight: int
    connections: int

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready values."""
        return {
            "total_requests": self.total_requests,
            "requests_by_path": dict(self.requests_by_path),
            "responses_by_status": {str(k): v for k, v in self.responses_by_status.items()},
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "connections": self.connections,
        }


class FakeTmdb:
    """A deterministic TMDB v3 API (and image CDN) for tests, demos and benchmarks.

    Serve it in-process with ``httpx.AsyncClient(transport=fake.transport(),
    base_url="https://api.themoviedb.org/3")`` or over a real socket with
    ``async with fake.serve() as base_url:``. The same id always gives the
    same JSON (``/movie/603`` is The Matrix, ``/tv/1399`` Game of Thrones;
    other ids get generated titles, dates, poster paths, genres, seasons).

    Every knob below is both a keyword argument and a property that can be
    changed while requests run. A request is answered, after its latency, by
    the first of: outage (503), throttling (429 with ``Retry-After``), random
    error (500), missing or wrong credentials (401, API paths only), a method
    other than GET or HEAD (405), unknown path or id (404), the JSON or image.

    Args:
        api_key: When set, API requests need ``?api_key=`` with this value
            (or a valid bearer token).
        access_token: When set, API requests need
            ``Authorization: Bearer <token>`` (or a valid ``api_key``).
            With neither set, no credentials are checked.
        latency: Seconds every response is delayed; concurrent requests
            wait side by side, never in a queue.
        jitter: Up to this many extra seconds per request, drawn from the
            seeded RNG.
        error_rate: Probability (0-1) that a request gets a 500, drawn from
            the seeded RNG.
        throttle: The next this many requests get 429 (counts down).
        retry_after: Seconds sent in the 429's ``Retry-After`` header.
        outage: While ``True``, every request gets 503.
        max_id: Highest id that exists; larger ids are 404 (at most
            9,999,999).
        deleted_ids: Ids that are 404 for every kind (movie, tv, person...).
        seed: Seeds the RNG behind ``jitter`` and ``error_rate``: the same seed
            and request order give the same delays and errors. The JSON
            does not depend on it.
        sleep: Awaited with each delay; inject a fake to test without waiting.

    Raises:
        ConfigurationError: an argument is out of range or of the wrong type.
    """

    latency: _Knob[float] = _Knob(_validate.duration, "Seconds every response is delayed.")
    jitter: _Knob[float] = _Knob(
        _validate.duration, "Up to this many extra seconds of delay per request."
    )
    error_rate: _Knob[float] = _Knob(
        _validate.probability, "Probability (0-1) that a request gets a 500."
    )
    throttle: _Knob[int] = _Knob(
        _validate.count, "How many of the next requests get 429 (counts down)."
    )
    # Retry-After carries delta-seconds (RFC 9110): whole seconds.
    retry_after: _Knob[int] = _Knob(
        _validate.whole_seconds, "Seconds sent in a 429's Retry-After header."
    )
    outage: _Knob[bool] = _Knob(_validate.flag, "While True, every request gets 503.")

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        error_rate: float = 0.0,
        throttle: int = 0,
        retry_after: int = 1,
        outage: bool = False,
        max_id: int = 1_000_000,
        deleted_ids: Iterable[int] = (),
        seed: int = 0,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> None:
        self._api_key = _validate.secret("api_key", api_key, allow_none=True)
        self._access_token = _validate.secret("access_token", access_token, allow_none=True)
        self.latency = latency
        self.jitter = jitter
        self.error_rate = error_rate
        self.throttle = throttle
        self.retry_after = retry_after
        self.outage = outage
        _validate.count("max_id", max_id, minimum=1, maximum=MAX_ID_LIMIT)
        self._catalogue = Catalogue(max_id, frozenset())
        self._bodies: cachetools.LRUCache[tuple[str, str, str], Reply]
        self._bodies = cachetools.LRUCache(_BODY_CACHE_SIZE)
        self.deleted_ids = frozenset(deleted_ids)
        self._error_rng = random.Random(f"{seed}:errors")
        self._jitter_rng = random.Random(f"{seed}:jitter")
        self._sleep = sleep
        self._in_flight = 0
        # The counters are read from other threads when serve_in_thread() is used.
        self._counters_lock = threading.Lock()
        self.reset_counters()

    def __repr__(self) -> str:
        auth = "required" if self._api_key or self._access_token else "off"
        return (
            f"<FakeTmdb auth={auth} latency={self.latency} error_rate={self.error_rate} "
            f"outage={self.outage} requests={self._total}>"
        )

    @property
    def max_id(self) -> int:
        """Highest id that exists."""
        return self._catalogue.max_id

    @property
    def deleted_ids(self) -> frozenset[int]:
        """Ids that are 404 for every kind; assign a new set to change them."""
        return self._catalogue.deleted_ids

    @deleted_ids.setter
    def deleted_ids(self, ids: Iterable[int]) -> None:
        checked = frozenset(_validate.count("deleted_ids", i, minimum=1) for i in ids)
        self._catalogue.deleted_ids = checked
        self._bodies.clear()

    # ------------------------------------------------------------ counters

    def stats(self) -> FakeTmdbStats:
        """Take a snapshot of the counters.

        Returns:
            The counters as they are now; later requests do not change it.
        """
        with self._counters_lock:
            return FakeTmdbStats(
                total_requests=self._total,
                requests_by_path=Counter(self._by_path),
                responses_by_status=Counter(self._by_status),
                in_flight=self._in_flight,
                peak_in_flight=self._peak_in_flight,
                connections=self._connections,
            )

    def reset_counters(self) -> None:
        """Zero the counters (requests still in flight stay counted as in flight)."""
        with self._counters_lock:
            self._total = 0
            self._by_path: Counter[str] = Counter()
            self._by_status: Counter[int] = Counter()
            self._peak_in_flight = self._in_flight
            self._connections = 0

    def _count_connection(self) -> None:
        with self._counters_lock:
            self._connections += 1

    # ------------------------------------------------------------ serving

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport for ``httpx.AsyncClient(transport=...)``.

        Routing looks at the URL path only, so one client can fetch both
        ``https://api.themoviedb.org/3/...`` and
        ``https://image.tmdb.org/t/p/{size}/{file}``. ``/configuration``
        points images at ``https://image.tmdb.org/t/p/``.

        Returns:
            An ``httpx.MockTransport`` answering from this fake.
        """
        return httpx.MockTransport(self._handle_httpx)

    async def _handle_httpx(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        authorization = request.headers.get("authorization")
        reply = await self._respond(request.method, target, authorization, TMDB_IMAGES_BASE_URL)
        content = b"" if request.method == "HEAD" else reply.body
        return httpx.Response(reply.status, headers=reply.headers, content=content)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Run a real HTTP/1.1 server on 127.0.0.1 (a free port) for the block.

        Yields the API base URL, ``"http://127.0.0.1:PORT/3"``. Images are
        served by the same server under ``/t/p/{size}/{file}``, and
        ``/configuration`` points there. Connections are persistent
        (keep-alive) and each is served by its own task. Leaving the block
        stops the server and closes its connections.

        Yields:
            The API base URL.
        """
        async with HttpServer(self._handle_http, on_connection=self._count_connection) as origin:
            yield origin + _API_PREFIX

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[str]:
        """:meth:`serve` for sync code: the server runs on its own event loop in a thread.

        For tests of threaded apps and of the sync ``TmdbClient``::

            with FakeTmdb(latency=0.02).serve_in_thread() as base_url:
                with TmdbClient(api_key="k", base_url=base_url) as tmdb:
                    tmdb.get_movie(603)

        The counters may be read from any thread meanwhile. A process forked
        inside the block can make requests to it (the server stays in the
        parent). Leaving the block stops the server and its thread.

        Yields:
            The API base URL, ``"http://127.0.0.1:PORT/3"``.
        """
        with (
            anyio.from_thread.start_blocking_portal() as portal,
            portal.wrap_async_context_manager(self.serve()) as base_url,
        ):
            yield base_url

    async def _handle_http(self, method: str, target: str, headers: Mapping[str, str]) -> Reply:
        host = headers.get("host")
        images = f"http://{host}{_IMAGES_PREFIX}" if host else TMDB_IMAGES_BASE_URL
        return await self._respond(method, target, headers.get("authorization"), images)

    # ------------------------------------------------------------ answering

    async def _respond(
        self, method: str, target: str, authorization: str | None, images_base_url: str
    ) -> Reply:
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        with self._counters_lock:
            self._total += 1
            self._by_path[path] += 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        # Drawn for every request, so a seed gives the same sequence whatever
        # the knobs were set to.
        error_draw = self._error_rng.random()
        delay = self.latency + self.jitter * self._jitter_rng.random()
        try:
            if delay > 0:
                await self._sleep(delay)
        finally:
            with self._counters_lock:
                self._in_flight -= 1
        reply = self._reply(method, path, url.query, authorization, images_base_url, error_draw)
        with self._counters_lock:
            self._by_status[reply.status] += 1
        return reply

    def _reply(
        self,
        method: str,
        path: str,
        query_string: str,
        authorization: str | None,
        images_base_url: str,
        error_draw: float,
    ) -> Reply:
        if self.outage:
            return _json_reply(503, _OFFLINE)
        if self.throttle > 0:
            self.throttle -= 1
            return _json_reply(429, _RATE_LIMITED, ("retry-after", str(self.retry_after)))
        if error_draw < self.error_rate:
            return _json_reply(500, _INTERNAL_ERROR)
        is_image = path.startswith(_IMAGES_PREFIX)
        is_api = path.startswith(_API_PREFIX + "/")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        if is_api and not self._authorised(query, authorization):
            return _json_reply(401, _UNAUTHORISED)
        if method not in ("GET", "HEAD"):
            return _json_reply(405, _BAD_METHOD)
        if is_image:
            return self._image(path.removeprefix(_IMAGES_PREFIX))
        if is_api:
            return self._api(path.removeprefix(_API_PREFIX), query, images_base_url)
        return _json_reply(404, NOT_FOUND)

    def _authorised(self, query: Mapping[str, str], authorization: str | None) -> bool:
        if self._api_key is None and self._access_token is None:
            return True
        key = query.get("api_key")
        if self._api_key is not None and key is not None and _same(key, self._api_key):
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return (
            self._access_token is not None
            and scheme.lower() == "bearer"
            and _same(token.strip(), self._access_token)
        )

    def _api(self, path: str, query: dict[str, str], images_base_url: str) -> Reply:
        query.pop("api_key", None)
        cache_key = (path, json.dumps(sorted(query.items())), images_base_url)
        reply = self._bodies.get(cache_key)
        if reply is None:
            reply = _json_reply(*self._catalogue.respond(path, query, images_base_url))
            self._bodies[cache_key] = reply
        return reply

    @staticmethod
    def _image(rest: str) -> Reply:
        size, _, file_name = rest.partition("/")
        image = image_bytes(size, file_name)
        if image is None:
            return _json_reply(404, NOT_FOUND)
        content_type, data = image
        headers = (("content-type", content_type), ("cache-control", _IMAGE_CACHE_CONTROL))
        return Reply(200, headers, data)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
