"""The TMDB client: cache orchestration and the endpoints.

- :class:`BaseTmdbClient` holds what does no I/O, for the async client and a
  sync twin alike: settings, the cache plan of a request (key, TTL, stale
  windows, the 404 negative cache) and the statistics.
- :class:`TmdbClient` (async) sends each request through
  :meth:`NamedCache.aget_or_set <seerrperf.NamedCache.aget_or_set>` and its
  transport (:mod:`.transport`: credentials, throttle, retries, errors).

Paths and parameters of the endpoints come from :mod:`.endpoints`, TTL tiers
from :mod:`.policy`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeAlias, TypeVar

import anyio
import httpx

from seerrperf import _validate
from seerrperf._batch import batch_fetch
from seerrperf._cache import NamedCache
from seerrperf._errors import SeerrperfError, TmdbNotFound
from seerrperf._runtime import Clock, percentile

from . import endpoints
from .endpoints import ApiRequest, Scalar
from .policy import TtlPolicy, check_language, check_params, check_path, check_region
from .transport import DEFAULT_BASE_URL, AsyncTransport, BaseTransport

__all__ = ["BaseTmdbClient", "CacheKey", "CachePlan", "TmdbClient", "TmdbStats", "cache_key"]

DEFAULT_CACHE_SIZE = 10_000

CacheKey: TypeAlias = tuple[str, tuple[tuple[str, str], ...]]
"""``(path, sorted parameters)``."""


def cache_key(path: str, params: Mapping[str, str]) -> CacheKey:
    """``(path, sorted params)``: stable, unambiguous (a value holding ``&``
    cannot pose as another parameter), and it never holds a credential."""
    return path, tuple(sorted(params.items()))


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TmdbStats:
    """A snapshot of a :class:`TmdbClient`'s counters.

    Attributes:
        requests: Calls made to the client.
        upstream_calls: HTTP requests sent to TMDB, retries included.
        cache_hits: Answers from a fresh cache entry.
        stale_served: Answers from a stale entry (while refreshing, or during
            an outage).
        coalesced: Callers that waited for another caller's identical upstream call.
        not_found_cached: 404s answered from the short negative cache.
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


@dataclass(frozen=True, slots=True)
class CachePlan:
    """How one request goes through the cache.

    Attributes:
        path: The checked API path.
        query: The query parameters as strings (language included, no credential).
        key: The cache key; ``None`` when the request is neither cached nor
            coalesced (``ttl=0``).
        missing_key: Where a 404 for this request is remembered.
        ttl: Seconds fresh.
        stale_while_revalidate: Seconds a stale entry is served while refreshing.
        stale_if_error: Seconds a stale entry is served when TMDB fails.
    """

    path: str
    query: dict[str, str]
    key: CacheKey | None
    missing_key: tuple[str, CacheKey]
    ttl: float
    stale_while_revalidate: float
    stale_if_error: float


_TransportT = TypeVar("_TransportT", bound=BaseTransport)


class BaseTmdbClient(Generic[_TransportT]):
    """What a TMDB client does without I/O: settings, cache plans, statistics.

    The async :class:`TmdbClient` (and a sync twin) add only the sending:
    after this constructor has checked the arguments, they set
    ``_transport``, which sends one GET (retries, throttle, errors).

    Args:
        cache: Where responses are cached; by default a private ``tmdb``
            cache of 10,000 entries on ``clock``.
        ttl_policy: TTL per endpoint; default :meth:`TtlPolicy.by_volatility`.
        language: Default ``language`` parameter.
        region: Default ``region`` for discover and movie search.
        clock: Monotonic clock for the default cache.

    Raises:
        ConfigurationError: a bad argument.
    """

    _transport: _TransportT

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
        self._cache = (
            NamedCache("tmdb", maxsize=DEFAULT_CACHE_SIZE, clock=clock)
            if cache is None
            else _validate.instance("cache", cache, NamedCache, "a NamedCache")
        )
        self._requests = 0
        self._not_found_cached = 0

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
        return TmdbStats(
            requests=self._requests,
            upstream_calls=upstream.upstream_calls,
            cache_hits=cache.hits,
            stale_served=cache.stale_hits,
            coalesced=cache.coalesced,
            not_found_cached=self._not_found_cached,
            retries=upstream.retries,
            rate_limited=upstream.rate_limited,
            errors=upstream.errors,
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
        )

    def _plan(
        self, path: str, params: Mapping[str, Scalar | None] | None, ttl: float | None
    ) -> CachePlan:
        """Check a request and plan its way through the cache.

        Raises:
            SeerrperfError: the client is closed.
            ConfigurationError: a bad path, parameter or ttl.
            TmdbNotFound: a 404 for it is remembered.
        """
        if self._transport.closed:
            raise SeerrperfError(f"this {type(self).__name__} is closed")
        path = check_path(path)
        query = check_params(params)
        if self._language and "language" not in query:
            query["language"] = self._language
        seconds = self._policy.ttl_for(path) if ttl is None else _validate.duration("ttl", ttl)
        self._requests += 1
        key = cache_key(path, query)
        plan = CachePlan(
            path=path,
            query=query,
            key=key if seconds else None,
            missing_key=("404", key),
            ttl=seconds,
            stale_while_revalidate=self._policy.swr_for(path),
            stale_if_error=self._policy.stale_if_error,
        )
        if plan.key is not None and plan.missing_key in self._cache:
            self._not_found_cached += 1
            raise TmdbNotFound(f"TMDB has no {path} (remembered)", status=404, path=path)
        return plan

    def _gone(self, plan: CachePlan) -> None:
        """TMDB answered 404: forget the stale copy and remember the 404."""
        assert plan.key is not None
        self._cache.delete(plan.key)
        self._cache.set(plan.missing_key, True, ttl=self._policy.not_found_ttl)


# --- the async client ------------------------------------------------------------------


class TmdbClient(BaseTmdbClient[AsyncTransport]):
    """Async client for TMDB API v3 with caching, coalescing and retries.

    ::

        async with TmdbClient(access_token=os.environ["TMDB_TOKEN"]) as tmdb:
            movie = await tmdb.get_movie(603)

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
        timeout: Seconds per HTTP request.
        max_retries: Retries after a 429, a 5xx or a transport error.
        max_rps: Upstream requests started per second at most (Seerr: 50);
            ``None`` disables the limiter.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        sleep: Awaitable sleep used for retries and the limiter (tests inject one).
        clock: Monotonic clock in seconds for the limiter, the 429 pause and
            the default cache (tests inject a :class:`~seerrperf.testing.FakeClock`).
        rng: Random source for backoff jitter.

    Raises:
        ConfigurationError: not exactly one credential, or a bad argument.
    """

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
        timeout: float = 10.0,
        max_retries: int = 3,
        max_rps: float | None = 50,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
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
            clock=clock,
            rng=rng,
            http_client=http_client,
            sleep=sleep,
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

    # -- the generic entry point ---------------------------------------------------------

    async def get(
        self,
        path: str,
        params: Mapping[str, Scalar | None] | None = None,
        *,
        ttl: float | None = None,
    ) -> dict[str, Any]:
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
            TmdbError: the matching subclass when TMDB cannot answer and no
                stale entry may be served.
        """
        plan = self._plan(path, params, ttl)
        transport = self._transport
        if plan.key is None:
            return await transport.aget(plan.path, plan.query)

        async def load() -> dict[str, Any]:
            try:
                return await transport.aget(plan.path, plan.query)
            except TmdbNotFound:
                self._gone(plan)
                raise

        result: dict[str, Any] = await self._cache.aget_or_set(
            plan.key,
            load,
            plan.ttl,
            stale_while_revalidate=plan.stale_while_revalidate,
            stale_if_error=plan.stale_if_error,
        )
        return result

    async def _send(self, request: ApiRequest) -> dict[str, Any]:
        return await self.get(request.path, request.params)

    # -- endpoints -----------------------------------------------------------------------

    async def get_movie(
        self, movie_id: int, *, append_to_response: Iterable[str] = ()
    ) -> dict[str, Any]:
        """``/movie/{id}``, optionally with ``append_to_response`` parts (cached 6 h by default)."""
        return await self._send(endpoints.movie(movie_id, append_to_response))

    async def get_tv(self, tv_id: int, *, append_to_response: Iterable[str] = ()) -> dict[str, Any]:
        """``/tv/{id}`` (cached 2 h by default: new seasons and episodes appear)."""
        return await self._send(endpoints.tv(tv_id, append_to_response))

    async def get_tv_season(self, tv_id: int, season: int) -> dict[str, Any]:
        """``/tv/{id}/season/{n}``; season 0 holds the specials."""
        return await self._send(endpoints.tv_season(tv_id, season))

    async def get_person(self, person_id: int) -> dict[str, Any]:
        """``/person/{id}``."""
        return await self._send(endpoints.person(person_id))

    async def get_collection(self, collection_id: int) -> dict[str, Any]:
        """``/collection/{id}``."""
        return await self._send(endpoints.collection(collection_id))

    async def search_multi(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/multi``: movies, shows and people in one list."""
        return await self._send(endpoints.search("multi", query, page))

    async def search_movie(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/movie`` (with the client's default ``region``)."""
        return await self._send(endpoints.search("movie", query, page, region=self._region))

    async def search_tv(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/tv``."""
        return await self._send(endpoints.search("tv", query, page))

    async def discover_movies(self, **filters: Scalar | None) -> dict[str, Any]:
        """``/discover/movie`` with TMDB's filters as keywords (``with_genres="28"``)."""
        return await self._send(endpoints.discover("movie", filters, region=self._region))

    async def discover_tv(self, **filters: Scalar | None) -> dict[str, Any]:
        """``/discover/tv`` with TMDB's filters as keywords."""
        return await self._send(endpoints.discover("tv", filters))

    async def trending(
        self,
        media_type: Literal["all", "movie", "tv", "person"] = "all",
        window: Literal["day", "week"] = "day",
    ) -> dict[str, Any]:
        """``/trending/{media_type}/{window}``."""
        return await self._send(endpoints.trending(media_type, window))

    async def get_configuration(self) -> dict[str, Any]:
        """``/configuration`` (image base URLs and sizes; cached 24 h)."""
        return await self._send(endpoints.configuration())

    async def get_languages(self) -> dict[str, Any]:
        """``/configuration/languages``, wrapped as ``{"results": [...]}``."""
        return await self._send(endpoints.languages())

    async def get_countries(self) -> dict[str, Any]:
        """``/configuration/countries``, wrapped as ``{"results": [...]}``."""
        return await self._send(endpoints.countries())

    async def get_genres(self, media_type: Literal["movie", "tv"]) -> dict[str, Any]:
        """``/genre/{media_type}/list``."""
        return await self._send(endpoints.genres(media_type))

    async def get_watch_providers(
        self, media_type: Literal["movie", "tv"], region: str | None = None
    ) -> dict[str, Any]:
        """``/watch/providers/{media_type}``, optionally for one ``watch_region``."""
        return await self._send(endpoints.watch_providers(media_type, region))

    async def get_watch_provider_regions(self) -> dict[str, Any]:
        """``/watch/providers/regions``."""
        return await self._send(endpoints.watch_provider_regions())

    async def get_keyword(self, keyword_id: int) -> dict[str, Any]:
        """``/keyword/{id}`` (cached 7 days)."""
        return await self._send(endpoints.keyword(keyword_id))

    async def get_certifications(self, media_type: Literal["movie", "tv"]) -> dict[str, Any]:
        """``/certification/{media_type}/list`` (cached 7 days)."""
        return await self._send(endpoints.certifications(media_type))

    async def find(self, external_id: str, source: str) -> dict[str, Any]:
        """``/find/{external_id}?external_source=...`` (e.g. ``"tt0133093"``, ``"imdb_id"``)."""
        return await self._send(endpoints.find(external_id, source))

    async def get_movies(
        self, movie_ids: Iterable[int], *, concurrency: int = 10
    ) -> list[dict[str, Any] | None]:
        """Fetch many movies at once; result ``i`` belongs to ``movie_ids[i]``.

        A movie that cannot be fetched (404, outage) is ``None``; the others
        are unaffected. Ids are checked before any request.
        """
        ids = endpoints.ids(movie_ids, "movie_id")
        return await batch_fetch(self.get_movie, ids, concurrency=concurrency)

    async def get_tvs(
        self, tv_ids: Iterable[int], *, concurrency: int = 10
    ) -> list[dict[str, Any] | None]:
        """Fetch many shows at once; aligned with ``tv_ids``, ``None`` for failures."""
        ids = endpoints.ids(tv_ids, "tv_id")
        return await batch_fetch(self.get_tv, ids, concurrency=concurrency)
