"""An async TMDB client with tiered TTLs, coalescing, stale serving and polite retries.

The pure parts (TTL tiers, input checks, retry timing, image URLs) live in
``policy``; caching and request coalescing come from :class:`NamedCache`;
batch forms use :func:`batch_fetch`.
"""

from __future__ import annotations

import collections
import logging
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote, quote_plus, urlsplit

import anyio
import httpx

from seerrperf import _validate
from seerrperf._batch import batch_fetch
from seerrperf._cache import NamedCache
from seerrperf._errors import (
    ConfigurationError,
    SeerrperfError,
    TmdbAuthError,
    TmdbError,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
)
from seerrperf._redact import redact
from seerrperf._runtime import StartSpacer

from .policy import (
    EXTERNAL_SOURCES,
    MEDIA_TYPES,
    TIME_WINDOWS,
    TRENDING_TYPES,
    TtlPolicy,
    backoff_delay,
    check_choice,
    check_id,
    check_page,
    check_path,
    check_query,
    retry_after_seconds,
    segment,
)

__all__ = [
    "TmdbAuthError",
    "TmdbClient",
    "TmdbError",
    "TmdbNotFound",
    "TmdbRateLimited",
    "TmdbResponseError",
    "TmdbStats",
    "TmdbUnavailable",
]

logger = logging.getLogger("seerrperf.tmdb")

DEFAULT_BASE_URL: Final = "https://api.themoviedb.org/3"
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Z]{2})?")
_REGION = re.compile(r"[A-Z]{2}")
_APPEND = re.compile(r"[a-z_]+(?:/\d+)?")
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
_LATENCY_WINDOW = 2048

Scalar = str | int | float | bool


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
        latency_p95_ms: 95th percentile of the same.
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
        return {
            "requests": self.requests,
            "upstream_calls": self.upstream_calls,
            "cache_hits": self.cache_hits,
            "stale_served": self.stale_served,
            "coalesced": self.coalesced,
            "not_found_cached": self.not_found_cached,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "errors": self.errors,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
        }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- argument checks -------------------------------------------------------------------


def _check_secret(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigurationError(f"{name} must be a non-empty printable string")
    return value


def _check_base_url(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError("base_url must be a string")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("base_url must not hold a query, fragment or credentials")
    return value.rstrip("/")


def _check_params(params: Mapping[str, object] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if not isinstance(key, str) or not key or not key.isprintable():
            raise ConfigurationError(f"parameter names must be non-empty strings, got {key!r}")
        if key.lower() in {"api_key", "access_token"}:
            raise ConfigurationError(f"pass credentials to TmdbClient(), not as parameter {key!r}")
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            raise ConfigurationError(
                f"parameter {key!r} must be a str, int, float or bool, got {type(value).__name__}"
            )
    return out


def _cache_key(path: str, params: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(path, sorted params)``: stable, unambiguous (a value holding ``&`` cannot
    pose as another parameter), and it never holds a credential."""
    return path, tuple(sorted(params.items()))


# --- the client ------------------------------------------------------------------------


class TmdbClient:
    """Async client for TMDB API v3 with caching, coalescing and retries.

    ::

        async with TmdbClient(access_token=os.environ["TMDB_TOKEN"]) as tmdb:
            movie = await tmdb.get_movie(603)

    Args:
        api_key: A v3 API key (sent as the ``api_key`` query parameter).
        access_token: A v4 read access token (sent as a bearer token; preferred).
        base_url: API root.
        cache: Where responses are cached; by default a private ``tmdb`` cache
            of 10,000 entries. Pass ``CacheManager.get_cache("tmdb")`` to see it
            next to your other caches.
        ttl_policy: TTL per endpoint; default :meth:`TtlPolicy.seed`.
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
        clock: Monotonic clock in seconds for the limiter (tests inject one).
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
        api_key = _check_secret("api_key", api_key)
        access_token = _check_secret("access_token", access_token)
        if (api_key is None) == (access_token is None):
            raise ConfigurationError("pass exactly one of api_key (v3) or access_token (v4)")
        if language is not None and (
            not isinstance(language, str) or not _LANGUAGE.fullmatch(language)
        ):
            raise ConfigurationError(f"language must look like 'en' or 'en-US', got {language!r}")
        if region is not None and (not isinstance(region, str) or not _REGION.fullmatch(region)):
            raise ConfigurationError(f"region must be an ISO 3166-1 code like 'US', got {region!r}")
        _validate.count("max_retries", max_retries)
        if cache is not None and not isinstance(cache, NamedCache):
            raise ConfigurationError("cache must be a NamedCache")
        if ttl_policy is not None and not isinstance(ttl_policy, TtlPolicy):
            raise ConfigurationError("ttl_policy must be a TtlPolicy")
        self._base = _check_base_url(base_url)
        self._timeout = _validate.duration("timeout", timeout, allow_zero=False)
        rps = None if max_rps is None else _validate.rate("max_rps", max_rps)
        self._max_retry_after = _validate.duration("max_retry_after", max_retry_after)
        self._max_retries = max_retries
        self._policy = ttl_policy if ttl_policy is not None else TtlPolicy.seed()
        self._cache = cache if cache is not None else NamedCache("tmdb", maxsize=10_000)
        self._language = language
        self._region = region
        # Also as they appear percent-encoded in a logged URL.
        self._secrets = tuple(
            dict.fromkeys(
                form
                for secret in (api_key, access_token)
                if secret
                for form in (secret, quote(secret, safe=""), quote_plus(secret))
            )
        )
        self._auth_params = {"api_key": api_key} if api_key else {}
        self._headers = {"Accept": "application/json"}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"
        self._owns_http = http_client is None
        self._http = (
            http_client
            if http_client is not None
            else httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                headers={"User-Agent": "seerrperf"},
            )
        )
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._spacer = StartSpacer(rps, clock) if rps else None
        self._paused_until = 0.0
        self._closed = False
        _LOG_FILTER.register(self)
        # counters
        self._requests = 0
        self._upstream = 0
        self._not_found_cached = 0
        self._retries = 0
        self._rate_limited = 0
        self._errors = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=_LATENCY_WINDOW)

    def __repr__(self) -> str:
        auth = "api_key=***" if self._auth_params else "access_token=***"
        return f"<TmdbClient {self._base} {auth}>"

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
        if self._closed:
            return
        self._closed = True
        _LOG_FILTER.unregister(self)
        if self._owns_http:
            await self._http.aclose()

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
        ordered = sorted(self._latencies)
        return TmdbStats(
            requests=self._requests,
            upstream_calls=self._upstream,
            cache_hits=cache.hits,
            stale_served=cache.stale_hits,
            coalesced=cache.coalesced,
            not_found_cached=self._not_found_cached,
            retries=self._retries,
            rate_limited=self._rate_limited,
            errors=self._errors,
            latency_p50_ms=_percentile(ordered, 0.50),
            latency_p95_ms=_percentile(ordered, 0.95),
        )

    # -- the generic entry point ---------------------------------------------------------

    async def get(
        self,
        path: str,
        params: Mapping[str, Scalar | None] | None = None,
        *,
        ttl: int | None = None,
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
        if self._closed:
            raise SeerrperfError("this TmdbClient is closed")
        path = check_path(path)
        query = _check_params(params)
        if self._language and "language" not in query:
            query["language"] = self._language
        if ttl is None:
            ttl = self._policy.ttl_for(path)
        elif isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise ConfigurationError(f"ttl must be an integer >= 0, got {ttl!r}")
        self._requests += 1
        if ttl == 0:
            return await self._fetch(path, query)
        key = _cache_key(path, query)
        missing_key = ("404", key)
        if missing_key in self._cache:
            self._not_found_cached += 1
            raise TmdbNotFound(f"TMDB has no {path} (remembered)", status=404, path=path)

        async def load() -> dict[str, Any]:
            try:
                return await self._fetch(path, query)
            except TmdbNotFound:
                # Deleted upstream: forget the stale copy and remember the 404.
                self._cache.delete(key)
                self._cache.set(missing_key, True, ttl=self._policy.not_found_ttl)
                raise

        result: dict[str, Any] = await self._cache.aget_or_set(
            key,
            load,
            ttl,
            stale_while_revalidate=self._policy.swr_for(path),
            stale_if_error=self._policy.stale_if_error,
        )
        return result

    async def _wait_for_slot(self) -> None:
        pause = self._paused_until - self._clock()
        if pause > 0:  # a 429's Retry-After holds every request
            await self._sleep(pause)
        if self._spacer is not None:
            wait = self._spacer.reserve()
            if wait > 0:
                await self._sleep(wait)

    async def _fetch(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        url = self._base + path
        params = {**query, **self._auth_params}
        attempt = 0
        while True:
            await self._wait_for_slot()
            if self._closed:  # e.g. a background refresh that outlived aclose()
                raise TmdbUnavailable(f"TMDB {path}: the client is closed", status=None, path=path)
            self._upstream += 1
            t0 = time.perf_counter()
            delay: float | None = None
            try:
                response = await self._http.get(
                    url, params=params, headers=self._headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                error: TmdbError = TmdbUnavailable(
                    self._describe(f"{type(exc).__name__}: {exc}", path), status=None, path=path
                )
            else:
                self._latencies.append((time.perf_counter() - t0) * 1000.0)
                status = response.status_code
                if 200 <= status < 300:
                    return self._parse(response, path)
                error = self._error_for(response, path)
                if status == 429:
                    self._rate_limited += 1
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    if wait is not None:
                        # Every request waits, not only this one (TMDB limits per
                        # client): the pause is served by _wait_for_slot.
                        pause = min(wait, self._max_retry_after)
                        self._paused_until = max(self._paused_until, self._clock() + pause)
                        delay = 0.0
                if not isinstance(error, TmdbRateLimited | TmdbUnavailable):
                    self._errors += 1
                    raise error
            if attempt >= self._max_retries:
                self._errors += 1
                raise error
            if delay is None:
                delay = backoff_delay(
                    attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP, jitter=self._rng.random()
                )
            attempt += 1
            self._retries += 1
            logger.debug("TMDB %s: %s; retry %d in %.2f s", path, error, attempt, delay)
            if delay:
                await self._sleep(delay)

    def _describe(self, message: str, path: str) -> str:
        return redact(f"TMDB {path}: {message}", self._secrets)[:300]

    def _error_for(self, response: httpx.Response, path: str) -> TmdbError:
        status = response.status_code
        detail = ""
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("status_message"), str):
                detail = ": " + body["status_message"]
        except ValueError:
            pass
        message = self._describe(f"HTTP {status}{detail}", path)
        if status == 404:
            return TmdbNotFound(message, status=status, path=path)
        if status in (401, 403):
            logger.warning("TMDB refused the credentials (HTTP %d)", status)
            return TmdbAuthError(message, status=status, path=path)
        if status == 429:
            return TmdbRateLimited(message, status=status, path=path)
        if status >= 500:
            return TmdbUnavailable(message, status=status, path=path)
        return TmdbResponseError(message, status=status, path=path)

    def _parse(self, response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, list):  # e.g. /configuration/languages
            return {"results": body}
        if not isinstance(body, dict):
            self._errors += 1
            raise TmdbResponseError(
                self._describe("the response is not a JSON object", path),
                status=response.status_code,
                path=path,
            )
        return body

    # -- endpoints -----------------------------------------------------------------------

    async def get_movie(
        self, movie_id: int, *, append_to_response: Iterable[str] = ()
    ) -> dict[str, Any]:
        """``/movie/{id}``, optionally with ``append_to_response`` parts (cached 6 h by default)."""
        return await self.get(
            f"/movie/{check_id(movie_id, 'movie_id')}", _append(append_to_response)
        )

    async def get_tv(self, tv_id: int, *, append_to_response: Iterable[str] = ()) -> dict[str, Any]:
        """``/tv/{id}`` (cached 2 h by default: new seasons and episodes appear)."""
        return await self.get(f"/tv/{check_id(tv_id, 'tv_id')}", _append(append_to_response))

    async def get_tv_season(self, tv_id: int, season: int) -> dict[str, Any]:
        """``/tv/{id}/season/{n}``; season 0 holds the specials."""
        if isinstance(season, bool) or not isinstance(season, int) or season < 0:
            raise ConfigurationError(f"season must be an integer >= 0, got {season!r}")
        return await self.get(f"/tv/{check_id(tv_id, 'tv_id')}/season/{season}")

    async def get_person(self, person_id: int) -> dict[str, Any]:
        """``/person/{id}``."""
        return await self.get(f"/person/{check_id(person_id, 'person_id')}")

    async def get_collection(self, collection_id: int) -> dict[str, Any]:
        """``/collection/{id}``."""
        return await self.get(f"/collection/{check_id(collection_id, 'collection_id')}")

    async def _search(
        self, kind: str, query: str, page: int, **extra: Scalar | None
    ) -> dict[str, Any]:
        params: dict[str, Scalar | None] = {
            "query": check_query(query),
            "page": check_page(page),
            "include_adult": False,
            **extra,
        }
        return await self.get(f"/search/{kind}", params)

    async def search_multi(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/multi``: movies, shows and people in one list."""
        return await self._search("multi", query, page)

    async def search_movie(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/movie`` (with the client's default ``region``)."""
        return await self._search("movie", query, page, region=self._region)

    async def search_tv(self, query: str, page: int = 1) -> dict[str, Any]:
        """``/search/tv``."""
        return await self._search("tv", query, page)

    async def _discover(self, kind: str, filters: Mapping[str, Scalar | None]) -> dict[str, Any]:
        params = dict(filters)
        if "page" in params:
            params["page"] = check_page(params["page"])
        if self._region and kind == "movie":
            params.setdefault("region", self._region)
        return await self.get(f"/discover/{kind}", params)

    async def discover_movies(self, **filters: Scalar | None) -> dict[str, Any]:
        """``/discover/movie`` with TMDB's filters as keywords (``with_genres="28"``)."""
        return await self._discover("movie", filters)

    async def discover_tv(self, **filters: Scalar | None) -> dict[str, Any]:
        """``/discover/tv`` with TMDB's filters as keywords."""
        return await self._discover("tv", filters)

    async def trending(
        self,
        media_type: Literal["all", "movie", "tv", "person"] = "all",
        window: Literal["day", "week"] = "day",
    ) -> dict[str, Any]:
        """``/trending/{media_type}/{window}``."""
        kind = check_choice(media_type, TRENDING_TYPES, "media_type")
        span = check_choice(window, TIME_WINDOWS, "window")
        return await self.get(f"/trending/{kind}/{span}")

    async def get_configuration(self) -> dict[str, Any]:
        """``/configuration`` (image base URLs and sizes; cached 24 h)."""
        return await self.get("/configuration")

    async def get_languages(self) -> dict[str, Any]:
        """``/configuration/languages``, wrapped as ``{"results": [...]}``."""
        return await self.get("/configuration/languages")

    async def get_countries(self) -> dict[str, Any]:
        """``/configuration/countries``, wrapped as ``{"results": [...]}``."""
        return await self.get("/configuration/countries")

    async def get_genres(self, media_type: Literal["movie", "tv"]) -> dict[str, Any]:
        """``/genre/{media_type}/list``."""
        return await self.get(f"/genre/{check_choice(media_type, MEDIA_TYPES, 'media_type')}/list")

    async def get_watch_providers(
        self, media_type: Literal["movie", "tv"], region: str | None = None
    ) -> dict[str, Any]:
        """``/watch/providers/{media_type}``, optionally for one ``watch_region``."""
        kind = check_choice(media_type, MEDIA_TYPES, "media_type")
        if region is not None and (not isinstance(region, str) or not _REGION.fullmatch(region)):
            raise ConfigurationError(f"region must be an ISO 3166-1 code like 'US', got {region!r}")
        return await self.get(f"/watch/providers/{kind}", {"watch_region": region})

    async def get_watch_provider_regions(self) -> dict[str, Any]:
        """``/watch/providers/regions``."""
        return await self.get("/watch/providers/regions")

    async def get_keyword(self, keyword_id: int) -> dict[str, Any]:
        """``/keyword/{id}`` (cached 7 days)."""
        return await self.get(f"/keyword/{check_id(keyword_id, 'keyword_id')}")

    async def get_certifications(self, media_type: Literal["movie", "tv"]) -> dict[str, Any]:
        """``/certification/{media_type}/list`` (cached 7 days)."""
        kind = check_choice(media_type, MEDIA_TYPES, "media_type")
        return await self.get(f"/certification/{kind}/list")

    async def find(self, external_id: str, source: str) -> dict[str, Any]:
        """``/find/{external_id}?external_source=...`` (e.g. ``"tt0133093"``, ``"imdb_id"``)."""
        source = check_choice(source, EXTERNAL_SOURCES, "source")
        return await self.get(
            f"/find/{segment(external_id, 'external_id')}", {"external_source": source}
        )

    async def get_movies(
        self, movie_ids: Iterable[int], *, concurrency: int = 10
    ) -> list[dict[str, Any] | None]:
        """Fetch many movies at once; result ``i`` belongs to ``movie_ids[i]``.

        A movie that cannot be fetched (404, outage) is ``None``; the others
        are unaffected. Ids are checked before any request.
        """
        ids = [check_id(i, "movie_id") for i in movie_ids]
        return await batch_fetch(self.get_movie, ids, concurrency=concurrency)

    async def get_tvs(
        self, tv_ids: Iterable[int], *, concurrency: int = 10
    ) -> list[dict[str, Any] | None]:
        """Fetch many shows at once; aligned with ``tv_ids``, ``None`` for failures."""
        ids = [check_id(i, "tv_id") for i in tv_ids]
        return await batch_fetch(self.get_tv, ids, concurrency=concurrency)


def _append(parts: Iterable[str]) -> dict[str, Scalar | None]:
    if isinstance(parts, str):
        parts = parts.split(",")
    chosen = sorted({p.strip() for p in parts if p.strip()})
    for part in chosen:
        if not _APPEND.fullmatch(part):
            raise ConfigurationError(f"append_to_response part {part!r} is not valid")
    return {"append_to_response": ",".join(chosen)} if chosen else {}


class _RedactingFilter(logging.Filter):
    """Masks live clients' credentials in httpx's request log lines (the URL of
    a v3 request carries ``api_key``). One filter for the process; clients are
    held weakly, so a client dropped without ``aclose()`` leaves nothing behind."""

    def __init__(self) -> None:
        super().__init__()
        self._clients: weakref.WeakSet[TmdbClient] = weakref.WeakSet()

    def register(self, client: TmdbClient) -> None:
        self._clients.add(client)
        logging.getLogger("httpx").addFilter(self)  # no-op when already there

    def unregister(self, client: TmdbClient) -> None:
        self._clients.discard(client)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [secret for client in list(self._clients) for secret in client._secrets]
        if secrets:
            message = record.getMessage()
            if any(secret in message for secret in secrets):
                record.msg = redact(message, secrets)
                record.args = ()
        return True


_LOG_FILTER = _RedactingFilter()
