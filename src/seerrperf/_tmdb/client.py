"""The TMDB clients: cache orchestration and the endpoints, written once for both twins.

- :class:`BaseTmdbClient` holds everything that does no I/O: settings, the
  cache plan of a request (key, TTL, stale windows), the remembered 404s,
  the statistics, and every endpoint method. It is generic over what a call
  returns -- a ``dict`` for the sync client, a coroutine producing one for
  the async client -- so each endpoint is written once and only hands its
  checked request to the twin's ``_fetch``.
- :class:`TmdbClient` (sync) sends a request through
  :meth:`NamedCache.get_or_set <seerrperf.NamedCache.get_or_set>` and a
  :class:`~.transport.Transport` over ``httpx.Client``;
  :class:`AsyncTmdbClient` through
  :meth:`NamedCache.aget_or_set <seerrperf.NamedCache.aget_or_set>` and an
  :class:`~.transport.AsyncTransport` over ``httpx.AsyncClient``.

A 404 is an answer, not a failure: the loader stores a private
:class:`NotFound` marker under the request's own key for the policy's
``not_found_ttl``, so a cache hit is one lookup whether TMDB had the title or
not, and a 404 during a background refresh replaces the stale value.

Paths and parameters of the endpoints come from :mod:`.endpoints`, TTL tiers
from :mod:`.policy`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeAlias, TypeVar

import anyio
import httpx

from seerrperf import _validate
from seerrperf._batch import batch_fetch
from seerrperf._cache import NamedCache
from seerrperf._errors import SeerrperfError, TmdbNotFound, TmdbResponseError
from seerrperf._runtime import Clock, at_fork, percentile

from . import endpoints
from .body import DEFAULT_MAX_BODY_BYTES
from .endpoints import ApiRequest, Scalar
from .policy import (
    TtlPolicy,
    check_language,
    check_params,
    check_path,
    check_region,
    image_base_from,
)
from .transport import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    AsyncTransport,
    BaseTransport,
    RateLimiter,
    Transport,
)

__all__ = [
    "AsyncTmdbClient",
    "BaseTmdbClient",
    "CacheKey",
    "CachePlan",
    "NotFound",
    "TmdbClient",
    "TmdbStats",
    "cache_key",
]

logger = logging.getLogger("seerrperf.tmdb")

DEFAULT_CACHE_SIZE = 10_000
_PLAN_MEMO_SIZE = 4096

CacheKey: TypeAlias = tuple[str, tuple[tuple[str, str], ...]]
"""``(path, sorted parameters)``."""


def cache_key(path: str, params: Mapping[str, str]) -> CacheKey:
    """``(path, sorted params)``: stable, unambiguous (a value holding ``&``
    cannot pose as another parameter), and it never holds a credential."""
    return path, tuple(sorted(params.items()))


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TmdbStats:
    """A snapshot of a TMDB client's counters (:class:`TmdbClient` or :class:`AsyncTmdbClient`).

    In a process forked from the one that created the client, the counters
    start again from zero: each worker reports its own requests.

    Attributes:
        requests: Calls made to the client.
        upstream_calls: HTTP requests sent to TMDB, retries included.
        cache_hits: Answers from a fresh cache entry.
        stale_served: Answers from a stale entry (while refreshing, or during
            an outage).
        coalesced: Callers that waited for another caller's identical upstream call.
        not_found_cached: 404s answered without an upstream call of their own
            (remembered, or shared with a concurrent identical call).
        retries: Requests sent again after a 429, a 5xx or a transport error.
        rate_limited: 429 responses received.
        errors: Requests that ended in a :class:`TmdbError` (after retries).
        latency_p50_ms: Median upstream latency over the recent window.
        latency_p95_ms: 95th percentile of the same (linear interpolation).
    """

    requests: int
    upstream_calls: int
    cache_hits: int
    stale_served: int
    coalesced: int
    not_found_cached: int
    retries: int
    rate_limited: int
    errors: int
    latency_p50_ms: float
    latency_p95_ms: float

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


# --- the shared base -------------------------------------------------------------------


class NotFound:
    """What the cache holds for a request that TMDB answered with 404.

    Private to the clients: a caller never sees it, it becomes
    :class:`~seerrperf.TmdbNotFound`. ``until`` is when the 404 stops being
    remembered, on the client's clock.
    """

    __slots__ = ("until",)

    def __init__(self, until: float) -> None:
        self.until = until

    def __repr__(self) -> str:
        return "<TMDB 404>"


class CachePlan:
    """How one request goes through the cache; made once per key and reused.

    Attributes:
        path: The checked API path.
        query: The query parameters as strings (language included, no credential).
        key: The cache key; ``None`` when the request is neither cached nor
            coalesced (``ttl=0``).
        ttl: Seconds fresh.
        stale_while_revalidate: Seconds a stale entry is served while refreshing.
        stale_if_error: Seconds a stale entry is served when TMDB fails.
        loader: What the cache calls on a miss (set by the client twin).
    """

    __slots__ = (
        "key",
        "loader",
        "path",
        "query",
        "stale_if_error",
        "stale_while_revalidate",
        "ttl",
    )

    def __init__(
        self,
        path: str,
        query: dict[str, str],
        key: CacheKey | None,
        ttl: float,
        stale_while_revalidate: float,
        stale_if_error: float,
    ) -> None:
        self.path = path
        self.query = query
        self.key = key
        self.ttl = ttl
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_if_error = stale_if_error
        self.loader: Callable[[], Any] = _no_loader

    def __repr__(self) -> str:
        return f"<CachePlan {self.key!r} ttl={self.ttl:g}>"


def _no_loader() -> Any:  # pragma: no cover - replaced before any use
    raise AssertionError("a cache plan without a loader")


_One = TypeVar("_One")
_Many = TypeVar("_Many")
_Text = TypeVar("_Text")


class BaseTmdbClient(Generic[_One, _Many, _Text]):
    """What a TMDB client does without I/O, and its endpoints, for both twins.

    :class:`TmdbClient` (sync) and :class:`AsyncTmdbClient` add only the
    sending: ``_fetch`` (a request through the cache and the transport),
    ``_load`` (a miss, with the 404 rule), ``_many`` (a batch) and ``_then``
    (a step after a fetch). Every endpoint method below returns what the
    twin's ``_fetch`` returns: the parsed JSON for the sync client, an
    awaitable of it for the async one.

    Args:
        cache: Where responses are cached; by default a private ``tmdb``
            cache of 10,000 entries on ``clock``.
        ttl_policy: TTL per endpoint; default :meth:`TtlPolicy.by_volatility`.
        language: Default ``language`` parameter.
        region: Default ``region`` for discover and movie search.
        clock: Monotonic clock for the default cache and the remembered 404s.

    Raises:
        ConfigurationError: a bad argument.
    """

    _transport: BaseTransport[Any]

    def __init__(
        self,
        *,
        cache: NamedCache | None,
        ttl_policy: TtlPolicy | None,
        language: str | None,
        region: str | None,
        clock: Clock,
    ) -> None:
        self._language = None if language is None else check_language(language)
        self._region = None if region is None else check_region(region)
        self._policy = (
            TtlPolicy.by_volatility()
            if ttl_policy is None
            else _validate.instance("ttl_policy", ttl_policy, TtlPolicy, "a TtlPolicy")
        )
        self._clock = _validate.function("clock", clock, "a clock like time.monotonic")
        self._cache = (
            NamedCache("tmdb", maxsize=DEFAULT_CACHE_SIZE, clock=clock)
            if cache is None
            else _validate.instance("cache", cache, NamedCache, "a NamedCache")
        )
        self._no_query = {} if self._language is None else {"language": self._language}
        self._plans: dict[object, CachePlan] = {}
        self._movie_plans: dict[int, CachePlan] = {}
        self._tv_plans: dict[int, CachePlan] = {}
        self._lock = threading.Lock()
        self._requests = 0
        self._not_found_answers = 0
        self._not_found_loads = 0
        at_fork(self, after_in_child=BaseTmdbClient._after_fork_in_child)

    def __repr__(self) -> str:
        credentials = self._transport.credentials
        return f"<{type(self).__name__} {self._transport.base_url} {credentials.kind}=***>"

    @property
    def cache(self) -> NamedCache:
        """The cache holding this client's responses."""
        return self._cache

    @property
    def ttl_policy(self) -> TtlPolicy:
        """The TTL policy in use."""
        return self._policy

    def stats(self) -> TmdbStats:
        """Return a snapshot of the counters (cache figures come from :attr:`cache`)."""
        cache = self._cache.stats(sizes=False)
        upstream = self._transport
        latencies = [seconds * 1000.0 for seconds in upstream.latency.snapshot().recent]
        with self._lock:
            requests = self._requests
            not_found_cached = self._not_found_answers - self._not_found_loads
        return TmdbStats(
            requests=requests,
            upstream_calls=upstream.upstream_calls,
            cache_hits=cache.hits,
            stale_served=cache.stale_hits,
            coalesced=cache.coalesced,
            not_found_cached=max(0, not_found_cached),
            retries=upstream.retries,
            rate_limited=upstream.rate_limited,
            errors=upstream.errors,
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
        )

    # -- planning (pure) -------------------------------------------------------------------

    def _begin(self) -> None:
        """Count a request, or refuse it on a closed client."""
        if self._transport.closed:
            raise SeerrperfError(f"this {type(self).__name__} is closed")
        lock = self._lock  # acquire/release: half the cost of `with` on the hit path
        lock.acquire()
        self._requests += 1
        lock.release()

    def _by_id(
        self, plans: dict[int, CachePlan], build: Callable[[int], ApiRequest], item_id: int
    ) -> CachePlan:
        """The plan of an id-only endpoint (``/movie/{id}``), kept per id: the hit path.

        A known id costs one dict lookup; anything else is checked by ``build``.
        """
        plan = plans.get(item_id) if item_id.__class__ is int else None
        if plan is None:
            plan = self._endpoint(build(item_id))  # counts the request
            if len(plans) >= _PLAN_MEMO_SIZE:
                plans.clear()
            plans[item_id] = plan
            return plan
        self._begin()
        return plan

    def _endpoint(self, request: ApiRequest) -> CachePlan:
        """The plan of an endpoint's request (already checked), made once per key."""
        self._begin()
        params = request.params
        memo = request.path if not params else (request.path, tuple(sorted(params.items())))
        plan = self._plans.get(memo)
        if plan is None:
            ttl = self._policy.ttls[request.endpoint]
            swr = ttl * self._policy.stale_while_revalidate
            plan = self._new_plan(request.path, params, ttl, swr, memo)
        return plan

    def _plan(
        self, path: str, params: Mapping[str, Scalar | None] | None, ttl: float | None
    ) -> CachePlan:
        """Check a generic request and plan its way through the cache.

        Raises:
            SeerrperfError: the client is closed.
            ConfigurationError: a bad path, parameter or ttl.
        """
        path = check_path(path)
        query = check_params(params)
        seconds = None if ttl is None else _validate.duration("ttl", ttl)
        self._begin()
        memo = path if not query else (path, tuple(sorted(query.items())))
        if seconds is None:
            plan = self._plans.get(memo)
            if plan is None:
                policy = self._policy
                plan = self._new_plan(path, query, policy.ttl_for(path), policy.swr_for(path), memo)
            return plan
        return self._new_plan(path, query, seconds, self._policy.swr_for(path), None)

    def _new_plan(
        self,
        path: str,
        params: Mapping[str, str],
        ttl: float,
        stale_while_revalidate: float,
        memo: object | None,
    ) -> CachePlan:
        query = {**self._no_query, **params}
        plan = CachePlan(
            path=path,
            query=query,
            key=cache_key(path, query) if ttl else None,
            ttl=ttl,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=self._policy.stale_if_error,
        )
        plan.loader = functools.partial(self._load, plan)
        if memo is not None:
            if len(self._plans) >= _PLAN_MEMO_SIZE:
                self._plans.clear()
            self._plans[memo] = plan
        return plan

    def _remember_not_found(self, plan: CachePlan) -> NotFound:
        """TMDB answered 404 to a load: store the marker under the request's key.

        The marker replaces any stale value (a deleted title is not served
        stale) and lives ``not_found_ttl`` seconds; the load then answers
        its callers with it. ``set`` also tells the running load not to store
        its own result, which would get the value's TTL.
        """
        assert plan.key is not None
        ttl = self._policy.not_found_ttl
        marker = NotFound(self._clock() + ttl)
        with self._lock:
            self._not_found_loads += 1
        self._cache.set(plan.key, marker, ttl=ttl)
        return marker

    def _not_found(self, plan: CachePlan, marker: NotFound, *, final: bool) -> None:
        """Raise :class:`TmdbNotFound` for a marker the cache answered with.

        A marker past its ``not_found_ttl`` was served as a stale entry (while
        one refresh asks TMDB again): unless ``final``, return instead, so
        that the twin waits for that refresh rather than answer 404 from
        memory.
        """
        if not final and self._clock() >= marker.until:
            return
        with self._lock:
            self._not_found_answers += 1
        raise TmdbNotFound(f"TMDB {plan.path}: HTTP 404 (remembered)", status=404, path=plan.path)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._requests = self._not_found_answers = self._not_found_loads = 0

    # -- what each twin does ---------------------------------------------------------------

    def _load(self, plan: CachePlan) -> Any:
        raise NotImplementedError

    def _fetch(self, plan: CachePlan) -> _One:
        raise NotImplementedError

    def _many(self, fetch: Callable[[int], _One], ids: list[int], concurrency: int) -> _Many:
        raise NotImplementedError

    def _then(self, result: _One, step: Callable[[dict[str, Any]], str]) -> _Text:
        raise NotImplementedError

    # -- the generic entry point -----------------------------------------------------------

    def get(
        self,
        path: str,
        params: Mapping[str, Scalar | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> _One:
        """GET an API path, through the cache.

        Args:
            path: Path below the API root, e.g. ``"/movie/603/credits"``.
            params: Query parameters (credentials are added by the client).
            ttl: Seconds to cache; ``None`` asks the :class:`TtlPolicy`; ``0``
                neither caches nor coalesces.

        Returns:
            The parsed JSON object; an endpoint that answers with a JSON array
            (``/configuration/languages``) comes back as ``{"results": [...]}``.

        Raises:
            ConfigurationError: a bad path, parameter or ttl (before any request).
            TmdbError: the matching subclass when TMDB cannot answer within
                the timeout and no stale entry may be served.
        """
        return self._fetch(self._plan(path, params, ttl))

    def _send(self, request: ApiRequest) -> _One:
        return self._fetch(self._endpoint(request))

    # -- endpoints -------------------------------------------------------------------------

    def get_movie(self, movie_id: int, *, append_to_response: Iterable[str] = ()) -> _One:
        """``/movie/{id}``, optionally with ``append_to_response`` parts (cached 6 h by default)."""
        if append_to_response:
            return self._send(endpoints.movie(movie_id, append_to_response))
        return self._fetch(self._by_id(self._movie_plans, endpoints.movie, movie_id))

    def get_tv(self, tv_id: int, *, append_to_response: Iterable[str] = ()) -> _One:
        """``/tv/{id}`` (cached 2 h by default: new seasons and episodes appear)."""
        if append_to_response:
            return self._send(endpoints.tv(tv_id, append_to_response))
        return self._fetch(self._by_id(self._tv_plans, endpoints.tv, tv_id))

    def get_tv_season(self, tv_id: int, season: int) -> _One:
        """``/tv/{id}/season/{n}``; season 0 holds the specials."""
        return self._send(endpoints.tv_season(tv_id, season))

    def get_person(self, person_id: int) -> _One:
        """``/person/{id}``."""
        return self._send(endpoints.person(person_id))

    def get_collection(self, collection_id: int) -> _One:
        """``/collection/{id}``."""
        return self._send(endpoints.collection(collection_id))

    def search_multi(self, query: str, page: int = 1) -> _One:
        """``/search/multi``: movies, shows and people in one list."""
        return self._send(endpoints.search("multi", query, page))

    def search_movie(self, query: str, page: int = 1) -> _One:
        """``/search/movie`` (with the client's default ``region``)."""
        return self._send(endpoints.search("movie", query, page, region=self._region))

    def search_tv(self, query: str, page: int = 1) -> _One:
        """``/search/tv``."""
        return self._send(endpoints.search("tv", query, page))

    def discover_movies(self, **filters: Scalar | None) -> _One:
        """``/discover/movie`` with TMDB's filters as keywords (``with_genres="28"``)."""
        return self._send(endpoints.discover("movie", filters, region=self._region))

    def discover_tv(self, **filters: Scalar | None) -> _One:
        """``/discover/tv`` with TMDB's filters as keywords."""
        return self._send(endpoints.discover("tv", filters))

    def trending(
        self,
        media_type: Literal["all", "movie", "tv", "person"] = "all",
        window: Literal["day", "week"] = "day",
    ) -> _One:
        """``/trending/{media_type}/{window}``."""
        return self._send(endpoints.trending(media_type, window))

    def get_configuration(self) -> _One:
        """``/configuration`` (image base URLs and sizes; cached 24 h by default)."""
        return self._send(endpoints.configuration())

    def image_base_url(self) -> _Text:
        """The image root TMDB names in ``/configuration`` (``images.secure_base_url``).

        Read through the cache like :meth:`get_configuration` (24 h by
        default), so it costs a lookup; pass it to
        :func:`~seerrperf.image_url` as ``base_url=``.

        Returns:
            An https URL ending in ``/``, e.g. ``"https://image.tmdb.org/t/p/"``.

        Raises:
            TmdbResponseError: ``/configuration`` names no usable image root
                (missing, not an http(s) URL, or holding spaces, control
                characters, a query or credentials).
            TmdbError: as for :meth:`get`.
        """
        return self._then(self._send(endpoints.configuration()), _image_base)

    def get_languages(self) -> _One:
        """``/configuration/languages``, wrapped as ``{"results": [...]}``."""
        return self._send(endpoints.languages())

    def get_countries(self) -> _One:
        """``/configuration/countries``, wrapped as ``{"results": [...]}``."""
        return self._send(endpoints.countries())

    def get_genres(self, media_type: Literal["movie", "tv"]) -> _One:
        """``/genre/{media_type}/list``."""
        return self._send(endpoints.genres(media_type))

    def get_watch_providers(
        self, media_type: Literal["movie", "tv"], region: str | None = None
    ) -> _One:
        """``/watch/providers/{media_type}``, optionally for one ``watch_region``."""
        return self._send(endpoints.watch_providers(media_type, region))

    def get_watch_provider_regions(self) -> _One:
        """``/watch/providers/regions``."""
        return self._send(endpoints.watch_provider_regions())

    def get_keyword(self, keyword_id: int) -> _One:
        """``/keyword/{id}`` (cached 7 days)."""
        return self._send(endpoints.keyword(keyword_id))

    def get_certifications(self, media_type: Literal["movie", "tv"]) -> _One:
        """``/certification/{media_type}/list`` (cached 7 days)."""
        return self._send(endpoints.certifications(media_type))

    def find(self, external_id: str, source: str) -> _One:
        """``/find/{external_id}?external_source=...`` (e.g. ``"tt0133093"``, ``"imdb_id"``)."""
        return self._send(endpoints.find(external_id, source))

    def get_movies(self, movie_ids: Iterable[int], *, concurrency: int = 10) -> _Many:
        """Fetch many movies at once; result ``i`` belongs to ``movie_ids[i]``.

        A movie that cannot be fetched (404, outage) is ``None``; the others
        are unaffected. Ids are checked before any request; equal ids share
        one call; at most ``concurrency`` run at once.
        """
        ids = endpoints.ids(movie_ids, "movie_id")
        workers = _validate.count("concurrency", concurrency, minimum=1)
        return self._many(self.get_movie, ids, workers)

    def get_tvs(self, tv_ids: Iterable[int], *, concurrency: int = 10) -> _Many:
        """Fetch many shows at once; aligned with ``tv_ids``, ``None`` for failures."""
        ids = endpoints.ids(tv_ids, "tv_id")
        workers = _validate.count("concurrency", concurrency, minimum=1)
        return self._many(self.get_tv, ids, workers)


def _image_base(configuration: dict[str, Any]) -> str:
    base = image_base_from(configuration)
    if base is None:
        raise TmdbResponseError(
            "TMDB /configuration: images.secure_base_url is missing or not a usable URL",
            status=200,
            path="/configuration",
        )
    return base


# --- the async client ------------------------------------------------------------------

_Json: TypeAlias = dict[str, Any]
_AsyncJson: TypeAlias = Coroutine[Any, Any, dict[str, Any]]
_AsyncMany: TypeAlias = Coroutine[Any, Any, list[dict[str, Any] | None]]
_AsyncText: TypeAlias = Coroutine[Any, Any, str]


class AsyncTmdbClient(BaseTmdbClient[_AsyncJson, _AsyncMany, _AsyncText]):
    """Async client for TMDB API v3 with caching, coalescing, a deadline and retries.

    ::

        async with AsyncTmdbClient(access_token=os.environ["TMDB_TOKEN"]) as tmdb:
            movie = await tmdb.get_movie(603)

    Runs on asyncio and trio (through anyio). Every endpoint method returns
    an awaitable of the parsed JSON. Tasks asking for the same resource at
    once share one upstream call; cancelling one never cancels it for the
    others.

    Args:
        api_key: A v3 API key (sent as the ``api_key`` query parameter).
        access_token: A v4 read access token (sent as a bearer token; preferred).
        base_url: API root.
        cache: Where responses are cached; by default a private ``tmdb`` cache
            of 10,000 entries on ``clock``. Pass ``CacheManager.get_cache("tmdb")``
            to see it next to your other caches.
        ttl_policy: TTL per endpoint; default :meth:`TtlPolicy.by_volatility`.
        http_client: An ``httpx.AsyncClient`` to use (it is not closed by
            this client); by default the client owns one with keep-alive.
        language: Default ``language`` parameter, e.g. ``"en-US"``.
        region: Default ``region`` for discover and movie search, e.g. ``"US"``.
        timeout: Seconds one upstream request may take in all: the rate
            limiter's waits and 429 pauses, every attempt's connect, write and
            whole read, and the waits between retries.
        max_retries: Retries after a 429, a 5xx or a transport error (within
            the timeout).
        max_rps: Upstream requests started per second at most (Seerr: 50);
            ``None`` disables the limiter.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        max_body_bytes: Largest response body accepted, counted after
            decompression (8 MiB by default); a larger one is not read on and
            raises :class:`~seerrperf.TmdbResponseError`.
        sleep: Awaitable sleep used for retries and the limiter (tests inject one).
        clock: Monotonic clock in seconds for the limiter, the 429 pause, the
            timeout and the default cache (tests inject a
            :class:`~seerrperf.testing.FakeClock`).
        rng: Random source for backoff jitter.
        rate_limiter: A fleet-wide limiter instead of the client's own
            ``max_rps`` (which is then ignored):
            ``backend.rate_limiter("tmdb", max_rps=40)`` makes ``max_rps``
            the total of every process and host, and a 429's
            ``Retry-After`` pauses all of them. Its waits count against
            ``timeout`` as the client's own limiter's do.

    Raises:
        ConfigurationError: not exactly one credential, or a bad argument.
    """

    _transport: AsyncTransport

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        cache: NamedCache | None = None,
        ttl_policy: TtlPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        language: str | None = None,
        region: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_rps: float | None = 50,
        max_retry_after: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            cache=cache, ttl_policy=ttl_policy, language=language, region=region, clock=clock
        )
        self._transport = AsyncTransport(
            api_key=api_key,
            access_token=access_token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_rps=max_rps,
            max_retry_after=max_retry_after,
            max_body_bytes=max_body_bytes,
            clock=clock,
            rng=rng,
            http_client=http_client,
            sleep=sleep,
            rate_limiter=rate_limiter,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned HTTP client (an injected one stays open)."""
        await self._transport.aclose()

    async def _fetch(self, plan: CachePlan) -> _Json:
        if plan.key is None:
            return await self._transport.aget(plan.path, plan.query)
        cache = self._cache
        value = await cache.aget_or_set(
            plan.key,
            plan.loader,
            plan.ttl,
            stale_while_revalidate=plan.stale_while_revalidate,
            stale_if_error=plan.stale_if_error,
        )
        if value.__class__ is NotFound:
            self._not_found(plan, value, final=False)
            # An expired 404 was served stale: wait for the refresh it started.
            value = await cache.aget_or_set(
                plan.key, plan.loader, plan.ttl, stale_if_error=plan.stale_if_error
            )
            if value.__class__ is NotFound:
                self._not_found(plan, value, final=True)
        result: _Json = value
        return result

    async def _load(self, plan: CachePlan) -> _Json | NotFound:
        try:
            return await self._transport.aget(plan.path, plan.query)
        except TmdbNotFound:
            return self._remember_not_found(plan)

    async def _many(
        self, fetch: Callable[[int], _AsyncJson], ids: list[int], concurrency: int
    ) -> list[_Json | None]:
        return await batch_fetch(fetch, ids, concurrency=concurrency)

    async def _then(self, result: _AsyncJson, step: Callable[[_Json], str]) -> str:
        return step(await result)


# --- the sync client -------------------------------------------------------------------


class TmdbClient(BaseTmdbClient[_Json, list[_Json | None], str]):
    """Client for TMDB API v3 with caching, coalescing, a deadline and retries, for threads.

    ::

        with TmdbClient(access_token=os.environ["TMDB_TOKEN"]) as tmdb:
            movie = tmdb.get_movie(603)

    For sync code (Django, Flask, gunicorn's sync and gthread workers); use
    :class:`AsyncTmdbClient` in async code. Create one per process and share
    it between threads: threads asking for the same resource at once make
    one upstream call, and the rate limiter and a 429's ``Retry-After``
    pause hold for every thread. A stale entry is served at once while one
    background thread refreshes it. A client created before a fork renews
    its HTTP connections in the child (an injected ``http_client`` cannot
    be renewed: the child's first request then raises
    :class:`~seerrperf.ConfigurationError`).

    Args:
        api_key: A v3 API key (sent as the ``api_key`` query parameter).
        access_token: A v4 read access token (sent as a bearer token; preferred).
        base_url: API root.
        cache: Where responses are cached; by default a private ``tmdb`` cache
            of 10,000 entries on ``clock``.
        ttl_policy: TTL per endpoint; default :meth:`TtlPolicy.by_volatility`.
        http_client: An ``httpx.Client`` to use (it is not closed by this
            client); by default the client owns one with keep-alive.
        language: Default ``language`` parameter, e.g. ``"en-US"``.
        region: Default ``region`` for discover and movie search, e.g. ``"US"``.
        timeout: Seconds one upstream request may take in all, as for
            :class:`AsyncTmdbClient`.
        max_retries: Retries after a 429, a 5xx or a transport error (within
            the timeout).
        max_rps: Upstream requests started per second at most, for all
            threads together; ``None`` disables the limiter.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        max_body_bytes: Largest response body accepted, counted after
            decompression (8 MiB by default).
        sleep: Sleep used for retries and the limiter (tests inject one).
        clock: Monotonic clock in seconds for the limiter, the 429 pause, the
            timeout and the default cache.
        rng: Random source for backoff jitter.
        rate_limiter: A fleet-wide limiter instead of the client's own
            ``max_rps`` (which is then ignored):
            ``backend.rate_limiter("tmdb", max_rps=40)`` makes ``max_rps``
            the total of every process and host, and a 429's
            ``Retry-After`` pauses all of them. Its waits count against
            ``timeout`` as the client's own limiter's do.

    Raises:
        ConfigurationError: not exactly one credential, or a bad argument.
    """

    _transport: Transport

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        cache: NamedCache | None = None,
        ttl_policy: TtlPolicy | None = None,
        http_client: httpx.Client | None = None,
        language: str | None = None,
        region: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_rps: float | None = 50,
        max_retry_after: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            cache=cache, ttl_policy=ttl_policy, language=language, region=region, clock=clock
        )
        self._transport = Transport(
            api_key=api_key,
            access_token=access_token,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_rps=max_rps,
            max_retry_after=max_retry_after,
            max_body_bytes=max_body_bytes,
            clock=clock,
            rng=rng,
            http_client=http_client,
            sleep=sleep,
            rate_limiter=rate_limiter,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the owned HTTP client (an injected one stays open)."""
        self._transport.close()

    def _fetch(self, plan: CachePlan) -> _Json:
        if plan.key is None:
            return self._transport.get(plan.path, plan.query)
        cache = self._cache
        value = cache.get_or_set(
            plan.key,
            plan.loader,
            plan.ttl,
            stale_while_revalidate=plan.stale_while_revalidate,
            stale_if_error=plan.stale_if_error,
        )
        if value.__class__ is NotFound:
            self._not_found(plan, value, final=False)
            # An expired 404 was served stale: wait for the refresh it started.
            value = cache.get_or_set(
                plan.key, plan.loader, plan.ttl, stale_if_error=plan.stale_if_error
            )
            if value.__class__ is NotFound:
                self._not_found(plan, value, final=True)
        result: _Json = value
        return result

    def _load(self, plan: CachePlan) -> _Json | NotFound:
        try:
            return self._transport.get(plan.path, plan.query)
        except TmdbNotFound:
            return self._remember_not_found(plan)

    def _many(
        self, fetch: Callable[[int], _Json], ids: list[int], concurrency: int
    ) -> list[_Json | None]:
        distinct = list(dict.fromkeys(ids))
        if not distinct:
            return []

        def one(item: int) -> _Json | None:
            try:
                return fetch(item)
            except Exception as exc:  # one failure never fails the batch
                logger.debug("get_many: id %d failed with %s", item, type(exc).__name__)
                return None

        workers = min(concurrency, len(distinct))
        with concurrent.futures.ThreadPoolExecutor(workers, "seerrperf-tmdb-batch") as pool:
            found = dict(zip(distinct, pool.map(one, distinct), strict=True))
        return [found[item] for item in ids]

    def _then(self, result: _Json, step: Callable[[_Json], str]) -> str:
        return step(result)
