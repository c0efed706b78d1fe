"""One GET to TMDB: credentials, the client-wide throttle, retries, error mapping, parsing.

Two layers, as in httpx's ``BaseClient`` and its twins:

- **Decisions, no I/O.** :class:`Credentials` (what a request carries, what
  a message must hide), :class:`Throttle` (when the next request may start:
  the start-rate limiter and the 429 pause, shared by every request of a
  client) and :class:`Exchange`, the state machine of one GET: given an
  attempt's outcome -- a response's status, headers and body, or a
  transport error -- it decides :class:`Return` this value, :class:`Raise`
  this error or :class:`Retry` after N seconds. :class:`BaseTransport`
  holds them with the settings and the counters.
- **I/O only.** :class:`AsyncTransport` awaits ``httpx.AsyncClient.get`` and
  ``sleep`` as the decisions say. A sync twin does the same with
  ``httpx.Client`` and ``time.sleep``; a fleet-wide limiter replaces the
  :class:`Throttle`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from urllib.parse import quote

import anyio
import httpx

from seerrperf import _validate
from seerrperf._errors import (
    ConfigurationError,
    TmdbAuthError,
    TmdbError,
    TmdbNotFound,
    TmdbRateLimited,
    TmdbResponseError,
    TmdbUnavailable,
)
from seerrperf._redact import redact
from seerrperf._runtime import Clock, LatencyHistogram, StartSpacer

from .policy import backoff_delay, check_base_url, retry_after_seconds

__all__ = [
    "DEFAULT_BASE_URL",
    "AsyncTransport",
    "BaseTransport",
    "Credentials",
    "Decision",
    "Exchange",
    "Raise",
    "Retry",
    "Return",
    "Throttle",
]

logger = logging.getLogger("seerrperf.tmdb")

DEFAULT_BASE_URL: Final = "https://api.themoviedb.org/3"
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 8.0
LATENCY_WINDOW: Final = 2048
_MESSAGE_LIMIT: Final = 300


# --- credentials and log masking --------------------------------------------------------


class Credentials:
    """A v3 API key or a v4 access token: what a request carries, what a text must hide.

    Args:
        api_key: A v3 API key (sent as the ``api_key`` query parameter).
        access_token: A v4 read access token (sent as a bearer token).

    Raises:
        ConfigurationError: not exactly one credential, or one that is not
            printable ASCII without spaces.
    """

    __slots__ = ("__weakref__", "headers", "kind", "params", "secrets")

    def __init__(self, *, api_key: str | None = None, access_token: str | None = None) -> None:
        api_key = _validate.secret("api_key", api_key, allow_none=True)
        access_token = _validate.secret("access_token", access_token, allow_none=True)
        if (api_key is None) == (access_token is None):
            raise ConfigurationError("pass exactly one of api_key (v3) or access_token (v4)")
        headers = {"Accept": "application/json"}
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        #: Which credential it is, for a ``repr``: ``"api_key"`` or ``"access_token"``.
        self.kind: Final = "api_key" if api_key is not None else "access_token"
        #: Query parameters every request carries.
        self.params: Final[Mapping[str, str]] = MappingProxyType(
            {"api_key": api_key} if api_key is not None else {}
        )
        #: Headers every request carries.
        self.headers: Final[Mapping[str, str]] = MappingProxyType(headers)
        secret = api_key if api_key is not None else access_token
        assert secret is not None
        # Also as it appears percent-encoded in a logged URL (a secret holds no
        # spaces, so quote_plus would add nothing).
        #: The forms of the secret that a text must not show.
        self.secrets: Final = tuple(dict.fromkeys((secret, quote(secret, safe=""))))

    def __repr__(self) -> str:
        return f"<Credentials {self.kind}=***>"

    def redact(self, text: str) -> str:
        """Return ``text`` with every form of the secret masked."""
        return redact(text, self.secrets)


class _SecretLogFilter(logging.Filter):
    """Masks live credentials in httpx's request log lines (the URL of a v3
    request carries ``api_key``). One filter for the process; credentials are
    held weakly, so a dropped client leaves nothing behind. A closed client's
    stay masked while it lives: a request still in flight logs after the close."""

    def __init__(self) -> None:
        super().__init__()
        self._live: weakref.WeakSet[Credentials] = weakref.WeakSet()

    def register(self, credentials: Credentials) -> None:
        self._live.add(credentials)
        logging.getLogger("httpx").addFilter(self)  # no-op when already there

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [secret for live in list(self._live) for secret in live.secrets]
        if secrets:
            message = record.getMessage()
            if any(secret in message for secret in secrets):
                record.msg = redact(message, secrets)
                record.args = ()
        return True


_LOG_FILTER: Final = _SecretLogFilter()


# --- the throttle -------------------------------------------------------------------------


class Throttle:
    """When the next request of a client may start; shared by all its requests.

    Two rules: starts are spaced ``1 / max_rps`` apart (a
    :class:`~seerrperf._runtime.StartSpacer`), and a 429's ``Retry-After``
    pauses every request, not only the one that got it (TMDB limits per
    client). It only decides; the caller sleeps. Safe to share between
    threads.

    Args:
        max_rps: Starts per second at most; ``None`` for no limit.
        clock: Monotonic clock in seconds.
    """

    __slots__ = ("_clock", "_lock", "_paused_until", "_spacer")

    def __init__(self, max_rps: float | None, clock: Clock) -> None:
        self._clock = clock
        self._spacer = StartSpacer(max_rps, clock) if max_rps is not None else None
        self._paused_until = -math.inf
        self._lock = threading.Lock()

    def pause_left(self) -> float:
        """Seconds left of the current 429 pause (0 when there is none)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (a longer pause wins)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def reserve(self) -> float:
        """Claim the next start slot; return how many seconds to wait for it."""
        if self._spacer is None:
            return 0.0
        with self._lock:
            return self._spacer.reserve()


# --- the decisions of one GET -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Return:
    """The GET is done: this is its value."""

    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Raise:
    """The GET is done: raise this error."""

    error: TmdbError


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the GET again after ``delay`` seconds (and after the throttle's turn)."""

    delay: float


Decision: TypeAlias = Return | Raise | Retry
"""What an :class:`Exchange` decides after each attempt."""


def _status_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    detail = parsed.get("status_message") if isinstance(parsed, dict) else None
    return f": {detail}" if isinstance(detail, str) else ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)  # httpx.Headers is case-insensitive; plain dicts may not be
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


class Exchange:
    """The state machine of one GET, from its first attempt to its end; no I/O.

    The I/O side calls :meth:`begin` before each attempt (once the throttle
    allows it), sends ``GET url`` with :attr:`params` and :attr:`headers`, and
    hands the outcome to :meth:`answered` or :meth:`failed`, which decide.

    Attributes:
        path: The API path, for messages.
        url: The full URL to GET.
        params: Query parameters, credentials included.
        headers: Request headers, credentials included.
        attempt: Attempts decided so far (0 before the first outcome).
    """

    __slots__ = ("_sent_at", "_transport", "attempt", "headers", "params", "path", "url")

    def __init__(self, transport: BaseTransport, path: str, query: Mapping[str, str]) -> None:
        credentials = transport.credentials
        self._transport = transport
        self.path = path
        self.url = transport.base_url + path
        self.params: dict[str, str] = {**query, **credentials.params}
        self.headers: Mapping[str, str] = credentials.headers
        self.attempt = 0
        self._sent_at = 0.0

    def begin(self) -> None:
        """Count the attempt about to be sent.

        Raises:
            TmdbUnavailable: the transport was closed meanwhile (e.g. a
                background refresh that outlived the client).
        """
        transport = self._transport
        if transport.closed:
            raise TmdbUnavailable(
                f"TMDB {self.path}: the client is closed", status=None, path=self.path
            )
        transport.upstream_calls += 1
        self._sent_at = time.perf_counter()

    def answered(self, status: int, headers: Mapping[str, str], body: bytes) -> Decision:
        """Decide after a response with ``status``, ``headers`` and ``body``."""
        transport = self._transport
        transport.latency.observe(time.perf_counter() - self._sent_at)
        if 200 <= status < 300:
            return self._parse(status, body)
        message = self._describe(f"HTTP {status}{_status_message(body)}")
        delay: float | None = None
        error: TmdbError
        if status == 404:
            error = TmdbNotFound(message, status=status, path=self.path)
        elif status in (401, 403):
            logger.warning("TMDB refused the credentials (HTTP %d)", status)
            error = TmdbAuthError(message, status=status, path=self.path)
        elif status == 429:
            error = TmdbRateLimited(message, status=status, path=self.path)
            transport.rate_limited += 1
            wait = retry_after_seconds(_header(headers, "retry-after"))
            if wait is not None:
                # Every request waits, not only this one: the throttle serves the pause.
                transport.throttle.pause(min(wait, transport.max_retry_after))
                delay = 0.0
        elif status >= 500:
            error = TmdbUnavailable(message, status=status, path=self.path)
        else:
            error = TmdbResponseError(message, status=status, path=self.path)
        if not isinstance(error, TmdbRateLimited | TmdbUnavailable):
            return self._give_up(error)
        return self._retry(error, delay)

    def failed(self, exc: Exception) -> Decision:
        """Decide after a transport error (no response: refused, reset, timed out)."""
        error = TmdbUnavailable(
            self._describe(f"{type(exc).__name__}: {exc}"), status=None, path=self.path
        )
        return self._retry(error, None)

    def _retry(self, error: TmdbError, delay: float | None) -> Decision:
        transport = self._transport
        if self.attempt >= transport.max_retries:
            return self._give_up(error)
        if delay is None:
            delay = backoff_delay(
                self.attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, jitter=transport.rng.random()
            )
        self.attempt += 1
        transport.retries += 1
        logger.debug("TMDB %s: %s; retry %d in %.2f s", self.path, error, self.attempt, delay)
        return Retry(delay)

    def _give_up(self, error: TmdbError) -> Raise:
        self._transport.errors += 1
        return Raise(error)

    def _parse(self, status: int, body: bytes) -> Decision:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):  # e.g. /configuration/languages
            return Return({"results": parsed})
        if not isinstance(parsed, dict):
            error = TmdbResponseError(
                self._describe("the response is not a JSON object"), status=status, path=self.path
            )
            return self._give_up(error)
        return Return(parsed)

    def _describe(self, message: str) -> str:
        return self._transport.credentials.redact(f"TMDB {self.path}: {message}")[:_MESSAGE_LIMIT]


# --- the transports -----------------------------------------------------------------------


class BaseTransport:
    """Everything about a GET to TMDB that does no I/O, for the async and sync twins.

    Args:
        api_key: A v3 API key.
        access_token: A v4 read access token.
        base_url: API root.
        timeout: Seconds per HTTP request.
        max_retries: Retries after a 429, a 5xx or a transport error.
        max_rps: Upstream requests started per second at most; ``None`` for no limit.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        clock: Monotonic clock in seconds for the throttle.
        rng: Random source for backoff jitter.

    Raises:
        ConfigurationError: a bad argument.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        access_token: str | None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_rps: float | None = 50,
        max_retry_after: float = 30.0,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.credentials = Credentials(api_key=api_key, access_token=access_token)
        self.base_url = check_base_url(base_url)
        self.timeout = _validate.duration("timeout", timeout, allow_zero=False)
        self.max_retries = _validate.count("max_retries", max_retries)
        rps = None if max_rps is None else _validate.rate("max_rps", max_rps)
        self.max_retry_after = _validate.duration("max_retry_after", max_retry_after)
        self.rng = (
            random.Random()
            if rng is None
            else _validate.instance("rng", rng, random.Random, "a random.Random")
        )
        self.throttle = Throttle(rps, clock)
        self.closed = False
        # Counters, read by the client's stats(); upstream latency in seconds.
        self.upstream_calls = 0
        self.retries = 0
        self.rate_limited = 0
        self.errors = 0
        self.latency = LatencyHistogram(window=LATENCY_WINDOW)
        _LOG_FILTER.register(self.credentials)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} {self.credentials.kind}=***>"

    def exchange(self, path: str, query: Mapping[str, str]) -> Exchange:
        """Start the decisions of one GET of ``path`` (already checked) with ``query``."""
        return Exchange(self, path, query)

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for the HTTP client a transport owns (either twin)."""
        return {
            "timeout": self.timeout,
            "limits": httpx.Limits(max_connections=64, max_keepalive_connections=32),
            "headers": {"User-Agent": "seerrperf"},
        }

    def _mark_closed(self) -> bool:
        """Mark the transport closed; return whether it was open."""
        was_open = not self.closed
        self.closed = True
        return was_open


class AsyncTransport(BaseTransport):
    """The async I/O of a GET: ``httpx.AsyncClient.get`` and ``sleep``, as decided.

    Args:
        http_client: An ``httpx.AsyncClient`` to use (not closed here); by
            default the transport owns one with keep-alive.
        sleep: Awaitable sleep for retries and the throttle.
        **settings: The :class:`BaseTransport` arguments.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        if http_client is not None:
            _validate.instance(
                "http_client", http_client, httpx.AsyncClient, "an httpx.AsyncClient"
            )
        self._owns_http = http_client is None
        self._http = (
            httpx.AsyncClient(**self.http_options()) if http_client is None else http_client
        )
        self._sleep = sleep

    async def aget(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` with ``query``, retrying as decided.

        Raises:
            TmdbError: the matching subclass, once no retry is left.
        """
        exchange = self.exchange(path, query)
        while True:
            pause = self.throttle.pause_left()
            if pause > 0:
                await self._sleep(pause)
            wait = self.throttle.reserve()
            if wait > 0:
                await self._sleep(wait)
            exchange.begin()
            try:
                response = await self._http.get(
                    exchange.url,
                    params=exchange.params,
                    headers=exchange.headers,
                    timeout=self.timeout,
                )
            except httpx.TransportError as exc:
                decision = exchange.failed(exc)
            else:
                decision = exchange.answered(
                    response.status_code, response.headers, response.content
                )
            if isinstance(decision, Return):
                return decision.value
            if isinstance(decision, Raise):
                raise decision.error
            if decision.delay:
                await self._sleep(decision.delay)

    async def aclose(self) -> None:
        """Close the owned HTTP client (an injected one stays open)."""
        if self._mark_closed() and self._owns_http:
            await self._http.aclose()
