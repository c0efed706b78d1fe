"""One GET to TMDB: credentials, the client-wide throttle, the deadline, retries, errors, parsing.

Two layers, as in httpx's ``BaseClient`` and its twins:

- **Decisions, no I/O.** :class:`Credentials` (what a request carries, what
  a message must hide), :class:`Throttle` (when the next request may start:
  the start-rate limiter and the 429 pause, shared by every request of a
  client, from any thread) and :class:`Exchange`, the state machine of one
  GET under one deadline: before each attempt it decides :class:`Send`
  (after the throttle's wait), :class:`Retry` (wait, then ask again) or
  :class:`Raise` (the budget cannot cover the wait); given an attempt's
  outcome -- a response's status, headers and body, a transport error, a
  refused body, the deadline -- it decides :class:`Return` this value,
  :class:`Raise` this error or :class:`Retry` after N seconds.
  :class:`BaseTransport` holds them with the settings, the counters and the
  fork handling.
- **I/O only.** :class:`AsyncTransport` streams ``httpx.AsyncClient``
  responses under ``anyio.fail_after`` and awaits ``sleep``;
  :class:`Transport` streams ``httpx.Client`` responses on a worker thread
  that the calling thread waits for with a timeout, and calls ``time.sleep``.
  Both feed the raw bytes to a :class:`~.body.BodyReader`. A fleet-wide
  limiter replaces the :class:`Throttle`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import operator
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar, cast
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
from seerrperf._runtime import Clock, LatencyHistogram, StartSpacer, at_fork

from .body import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_BODY_BYTES,
    ERROR_BODY_BYTES,
    BodyReader,
    BodyRefused,
    parse_json,
)
from .policy import backoff_delay, check_base_url, peer_text, retry_after_seconds

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
    "Send",
    "Throttle",
    "Transport",
]

logger = logging.getLogger("seerrperf.tmdb")

DEFAULT_BASE_URL: Final = "https://api.themoviedb.org/3"
DEFAULT_TIMEOUT: Final = 10.0
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 8.0
LATENCY_WINDOW: Final = 2048
MAX_CONNECTIONS: Final = 64
_MESSAGE_LIMIT: Final = 300


# --- fork safety --------------------------------------------------------------------------

# Each object renews what a fork breaks through seerrperf._runtime.at_fork, in
# the child, where only the forking thread exists: a lock another thread held
# at the fork would stay locked forever, and a socket would be the parent's.
# methodcaller: a subclass's override runs, and no strong reference is kept.
_AFTER_FORK: Final = operator.methodcaller("_after_fork_in_child")

# HTTP clients a child inherited: kept referenced and never closed, since
# closing (or garbage-collecting) them could touch sockets the parent still uses.
_INHERITED: Final[list[object]] = []


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
        # Threads log while others create clients: a set must not change mid-iteration.
        self._live_lock = threading.Lock()

    def register(self, credentials: Credentials) -> None:
        with self._live_lock:
            self._live.add(credentials)
        logging.getLogger("httpx").addFilter(self)  # no-op when already there

    def filter(self, record: logging.LogRecord) -> bool:
        with self._live_lock:
            live = list(self._live)
        secrets = [secret for credentials in live for secret in credentials.secrets]
        if secrets:
            message = record.getMessage()
            if any(secret in message for secret in secrets):
                record.msg = redact(message, secrets)
                record.args = ()
        return True

    def _after_fork_in_child(self) -> None:
        self._live_lock = threading.Lock()


_LOG_FILTER: Final = _SecretLogFilter()
at_fork(_LOG_FILTER, after_in_child=_AFTER_FORK)


# --- the throttle -------------------------------------------------------------------------


class Throttle:
    """When the next request of a client may start; shared by all its requests.

    Two rules: starts are spaced ``1 / max_rps`` apart (a
    :class:`~seerrperf._runtime.StartSpacer`), and a 429's ``Retry-After``
    pauses every request, not only the one that got it (TMDB limits per
    client). It only decides; the caller sleeps. Safe to share between
    threads, and between tasks of any event loop; a forked child gets a
    fresh lock.

    This is the one seam for another limiter (a fleet-wide one): anything
    with ``pause_left()``, ``pause(seconds)`` and ``reserve()`` will do.

    Args:
        max_rps: Starts per second at most; ``None`` for no limit.
        clock: Monotonic clock in seconds.
    """

    __slots__ = ("__weakref__", "_clock", "_lock", "_paused_until", "_spacer")

    def __init__(self, max_rps: float | None, clock: Clock) -> None:
        self._clock = clock
        self._spacer = StartSpacer(max_rps, clock) if max_rps is not None else None
        self._paused_until = -math.inf
        self._lock = threading.Lock()
        at_fork(self, after_in_child=_AFTER_FORK)

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

    async def apause(self, seconds: float) -> None:
        """The async twin of :meth:`pause` (no I/O: it only decides)."""
        self.pause(seconds)

    async def areserve(self) -> float:
        """The async twin of :meth:`reserve` (no I/O: it only decides)."""
        return self.reserve()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


class RateLimiter(Protocol):
    """What a transport needs of its limiter: :class:`Throttle`, or a fleet-wide one.

    :class:`~seerrperf.RedisRateLimiter` (``backend.rate_limiter(name,
    max_rps=...)``) has this face: passed as ``rate_limiter=`` to a TMDB
    client, it replaces the client's own :class:`Throttle`.
    """

    def pause_left(self) -> float:
        """Seconds left of a pause this process knows of, without I/O."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now."""
        ...

    def reserve(self) -> float:
        """Claim the next start slot; return the seconds to wait for it."""
        ...

    async def apause(self, seconds: float) -> None:
        """The async twin of :meth:`pause`."""
        ...

    async def areserve(self) -> float:
        """The async twin of :meth:`reserve`."""
        ...


_LIMITER_METHODS = ("pause_left", "pause", "reserve", "apause", "areserve")


def check_rate_limiter(limiter: object) -> RateLimiter:
    """Return ``limiter`` if it has the :class:`RateLimiter` methods.

    Raises:
        ConfigurationError: one of them is missing.
    """
    missing = [name for name in _LIMITER_METHODS if not callable(getattr(limiter, name, None))]
    if missing:
        raise ConfigurationError(
            "rate_limiter must have pause_left(), pause(), reserve(), apause() and areserve() "
            f"(backend.rate_limiter(name, max_rps=...)); {type(limiter).__name__} lacks "
            + ", ".join(f"{name}()" for name in missing)
        )
    return cast(RateLimiter, limiter)


# --- the decisions of one GET -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Return:
    """The GET is done: this is its value."""

    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Raise:
    """The GET is done: raise this error (after pausing every request ``pause`` seconds)."""

    error: TmdbError
    pause: float = 0.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Pause every request ``pause`` seconds (a 429's ``Retry-After``: the I/O side tells
    the limiter), wait ``delay`` seconds, then ask :meth:`Exchange.next` again."""

    delay: float
    pause: float = 0.0


@dataclass(frozen=True, slots=True)
class Send:
    """Wait ``wait`` seconds (the throttle's slot), then send the next attempt."""

    wait: float


Decision: TypeAlias = Return | Raise | Retry | Send
"""What an :class:`Exchange` decides before and after each attempt."""


def _status_message(body: bytes) -> str:
    try:
        parsed = parse_json(body, max_depth=8)
    except BodyRefused:
        return ""
    detail = parsed.get("status_message") if isinstance(parsed, dict) else None
    return f": {peer_text(detail)}" if isinstance(detail, str) else ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)  # httpx.Headers is case-insensitive; plain dicts may not be
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


class Exchange:
    """The state machine of one GET under one deadline, from its first attempt to its end; no I/O.

    The deadline is ``timeout`` seconds after the exchange starts, on the
    transport's clock, and everything counts against it: the throttle's
    waits and 429 pauses, each attempt's connect, write and whole read, and
    the backoff between attempts. A wait the budget cannot cover is not
    begun: the exchange gives up at once with the last error.

    The I/O side loops: :meth:`next` says :class:`Send` (wait, call
    :meth:`begin`, send ``GET url`` with :attr:`params` and :attr:`headers`
    within :meth:`remaining` seconds, reading the body through
    :meth:`reader`), :class:`Retry` (wait, ask :meth:`next` again) or
    :class:`Raise`; the attempt's outcome goes to :meth:`answered`,
    :meth:`failed`, :meth:`refused` or :meth:`timed_out`, which decide.

    Attributes:
        path: The API path, for messages.
        url: The full URL to GET.
        params: Query parameters, credentials included.
        headers: Request headers, credentials included.
        attempt: Retries decided so far.
        deadline: When the budget ends, on the transport's clock.
    """

    __slots__ = (
        "_last",
        "_paused",
        "_sent_at",
        "_transport",
        "attempt",
        "deadline",
        "headers",
        "params",
        "path",
        "url",
    )

    def __init__(self, transport: BaseTransport[Any], path: str, query: Mapping[str, str]) -> None:
        self._transport = transport
        self.path = path
        self.url = transport.base_url + path
        self.params: dict[str, str] = {**query, **transport.credentials.params}
        self.headers: Mapping[str, str] = transport.request_headers
        self.attempt = 0
        self.deadline = transport.clock() + transport.timeout
        self._sent_at = 0.0
        self._last: TmdbError | None = None
        self._paused = False

    def remaining(self) -> float:
        """Seconds left of the budget (negative once it is spent)."""
        return self.deadline - self._transport.clock()

    def next(self) -> Send | Retry | Raise:
        """Decide before an attempt: wait out a 429 pause, then the throttle's slot.

        ``paused() or slot(throttle.reserve())``: the sync twin's way. The
        async twin calls :meth:`paused`, then awaits ``areserve()`` for
        :meth:`slot`, so a fleet-wide limiter's round trip never blocks its loop.
        """
        return self.paused() or self.slot(self._transport.throttle.reserve())

    def paused(self) -> Retry | Raise | None:
        """Before an attempt: wait out a 429 pause (``None``: none, take a slot next)."""
        throttle = self._transport.throttle
        left = self.remaining()
        # One pause per attempt: once it is waited out, the attempt takes its slot.
        pause = 0.0 if self._paused else throttle.pause_left()
        self._paused = False
        if pause > 0:
            if pause >= left:
                paused = self._last or TmdbRateLimited(
                    self._describe(
                        f"TMDB asked every request to wait {pause:.1f} s, more than "
                        f"the {left:.1f} s left of the timeout"
                    ),
                    status=None,
                    path=self.path,
                )
                if paused.retry_after is None:
                    paused.retry_after = pause
                return self._give_up(paused)
            self._paused = True
            return Retry(pause)
        return None

    def slot(self, wait: float) -> Send | Raise:
        """Given the throttle's wait for this attempt's start slot: send after it, or give up."""
        left = self.remaining()
        if wait >= left:
            return self._give_up(
                self._last
                or TmdbUnavailable(
                    self._describe(
                        f"no time left of the {self._transport.timeout:g} s timeout"
                        if left <= 0
                        else f"the rate limiter's next slot is {wait:.1f} s away, more than "
                        f"the {left:.1f} s left of the timeout"
                    ),
                    status=None,
                    path=self.path,
                )
            )
        return Send(wait)

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
        transport.add("upstream_calls")
        self._sent_at = time.perf_counter()

    def reader(self, status: int, headers: Mapping[str, str], *, decoded: bool) -> BodyReader:
        """A reader for the body of a response with ``status`` and ``headers``.

        A 2xx body may hold ``max_body_bytes`` decoded bytes and is refused
        beyond; an error's body is read only for its message, and only its
        first bytes. ``decoded`` says that the body comes decoded already
        (an in-memory response).

        Raises:
            BodyRefused: a 2xx in a coding that was not asked for, or whose
                ``Content-Length`` is above the limit.
        """
        if 200 <= status < 300:
            return BodyReader(self._transport.max_body_bytes, headers, decoded=decoded)
        return BodyReader(ERROR_BODY_BYTES, headers, truncate=True, decoded=decoded)

    def answered(self, status: int, headers: Mapping[str, str], body: bytes) -> Decision:
        """Decide after a response with ``status``, ``headers`` and ``body``."""
        transport = self._transport
        transport.latency.observe(time.perf_counter() - self._sent_at)
        if 200 <= status < 300:
            return self._parse(status, body)
        message = self._describe(f"HTTP {status}{_status_message(body)}")
        delay: float | None = None
        pause = 0.0
        error: TmdbError
        if status == 404:
            error = TmdbNotFound(message, status=status, path=self.path)
        elif status in (401, 403):
            logger.warning("TMDB refused the credentials (HTTP %d)", status)
            error = TmdbAuthError(message, status=status, path=self.path)
        elif status == 429:
            error = TmdbRateLimited(message, status=status, path=self.path)
            transport.add("rate_limited")
            wait = retry_after_seconds(_header(headers, "retry-after"))
            if wait is not None:
                # Every request waits, not only this one: the I/O side tells the
                # limiter (a fleet-wide one pauses every process).
                pause = min(wait, transport.max_retry_after)
                delay = 0.0
                error.retry_after = wait  # what TMDB asked for, for a 503's Retry-After
        elif status >= 500:
            error = TmdbUnavailable(message, status=status, path=self.path)
            error.retry_after = retry_after_seconds(_header(headers, "retry-after"))
        else:
            error = TmdbResponseError(message, status=status, path=self.path)
        if not isinstance(error, TmdbRateLimited | TmdbUnavailable):
            return self._give_up(error)
        return self._retry(error, delay, pause)

    def failed(self, exc: Exception) -> Decision:
        """Decide after a transport error (no response: refused, reset, timed out)."""
        detail = peer_text(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, httpx.TimeoutException):
            # Each attempt may take what is left of the budget: it is spent.
            return self.timed_out(detail)
        error = TmdbUnavailable(self._describe(detail), status=None, path=self.path)
        return self._retry(error, None)

    def refused(self, status: int, refusal: BodyRefused) -> Raise:
        """Decide after a body was refused (too large, badly encoded): give up."""
        self._transport.latency.observe(time.perf_counter() - self._sent_at)
        error = TmdbResponseError(self._describe(str(refusal)), status=status, path=self.path)
        return self._give_up(error)

    def timed_out(self, detail: str = "") -> Raise:
        """Decide after the attempt ran into the deadline: give up."""
        timeout = self._transport.timeout
        error = TmdbUnavailable(
            self._describe(
                f"no answer within the {timeout:g} s timeout" + (f" ({detail})" if detail else "")
            ),
            status=None,
            path=self.path,
        )
        return self._give_up(error)

    def _retry(self, error: TmdbError, delay: float | None, pause: float = 0.0) -> Decision:
        transport = self._transport
        if self.attempt >= transport.max_retries:
            return self._give_up(error, pause)
        if delay is None:
            delay = backoff_delay(
                self.attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, jitter=transport.random()
            )
        if max(delay, pause) >= self.remaining():  # the wait alone would spend the budget
            return self._give_up(error, pause)
        self.attempt += 1
        self._last = error
        transport.add("retries")
        logger.debug("TMDB %s: %s; retry %d in %.2f s", self.path, error, self.attempt, delay)
        return Retry(delay, pause)

    def _give_up(self, error: TmdbError, pause: float = 0.0) -> Raise:
        self._transport.add("errors")
        return Raise(error, pause)

    def _parse(self, status: int, body: bytes) -> Decision:
        try:
            parsed = parse_json(body)
        except BodyRefused as refusal:
            reason = str(refusal)
        else:
            if isinstance(parsed, list):  # e.g. /configuration/languages
                return Return({"results": parsed})
            if isinstance(parsed, dict):
                return Return(parsed)
            reason = "the response is not a JSON object"
        error = TmdbResponseError(self._describe(reason), status=status, path=self.path)
        return self._give_up(error)

    def _describe(self, message: str) -> str:
        return self._transport.credentials.redact(f"TMDB {self.path}: {message}")[:_MESSAGE_LIMIT]


# --- the transports -----------------------------------------------------------------------

_HttpT = TypeVar("_HttpT", httpx.Client, httpx.AsyncClient)


class BaseTransport(Generic[_HttpT]):
    """Everything about a GET to TMDB that does no I/O, for the async and sync twins.

    Args:
        api_key: A v3 API key.
        access_token: A v4 read access token.
        base_url: API root.
        timeout: Seconds one GET may take in all: the throttle's waits, every
            attempt's connect, write and whole read, and the waits between
            attempts.
        max_retries: Retries after a 429, a 5xx or a transport error.
        max_rps: Upstream requests started per second at most; ``None`` for no limit.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds.
        max_body_bytes: Largest decoded body accepted from a 2xx response.
        rate_limiter: A limiter to use instead of a :class:`Throttle` of
            ``max_rps`` (a fleet-wide ``RedisRateLimiter``); ``None``: own one.
        clock: Monotonic clock in seconds for the throttle and the deadline.
        rng: Random source for backoff jitter.
        http_client: The HTTP client to use (not closed here), or ``None``
            to own one.

    Raises:
        ConfigurationError: a bad argument.

    Attributes:
        upstream_calls: HTTP requests sent, retries included.
        retries: Attempts decided to be sent again.
        rate_limited: 429 responses received.
        errors: GETs that ended in a :class:`TmdbError`.
        latency: Upstream latency in seconds (a
            :class:`~seerrperf._runtime.LatencyHistogram`).
    """

    _http_class: type[_HttpT]

    def __init__(
        self,
        *,
        api_key: str | None,
        access_token: str | None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_rps: float | None = 50,
        max_retry_after: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        http_client: _HttpT | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.credentials = Credentials(api_key=api_key, access_token=access_token)
        self.base_url = check_base_url(base_url)
        self.timeout = _validate.duration("timeout", timeout, allow_zero=False)
        self.max_retries = _validate.count("max_retries", max_retries)
        rps = None if max_rps is None else _validate.rate("max_rps", max_rps)
        self.max_retry_after = _validate.duration("max_retry_after", max_retry_after)
        self.max_body_bytes = _validate.count("max_body_bytes", max_body_bytes, minimum=1024)
        self.clock = _validate.function("clock", clock, "a clock like time.monotonic")
        self._rng = (
            random.Random()
            if rng is None
            else _validate.instance("rng", rng, random.Random, "a random.Random")
        )
        if http_client is not None:
            what = f"an httpx.{self._http_class.__name__}"
            _validate.instance("http_client", http_client, self._http_class, what)
        self.request_headers: Final[Mapping[str, str]] = MappingProxyType(
            {**self.credentials.headers, "Accept-Encoding": ACCEPT_ENCODING}
        )
        self.throttle: RateLimiter = (
            Throttle(rps, clock) if rate_limiter is None else check_rate_limiter(rate_limiter)
        )
        self.closed = False
        self._owns_http = http_client is None
        self._http: _HttpT | None = self._new_http() if http_client is None else http_client
        self._inherited_http = False  # an injected client, created before a fork
        self._lock = threading.Lock()
        self._zero_counters()
        _LOG_FILTER.register(self.credentials)
        at_fork(self, after_in_child=_AFTER_FORK)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} {self.credentials.kind}=***>"

    def exchange(self, path: str, query: Mapping[str, str]) -> Exchange:
        """Start the decisions of one GET of ``path`` (already checked) with ``query``."""
        return Exchange(self, path, query)

    def add(self, counter: str) -> None:
        """Add one to ``counter`` (a counter attribute), exactly, from any thread."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def random(self) -> float:
        """A jitter draw in [0, 1), from any thread."""
        with self._lock:
            return self._rng.random()

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for the HTTP client a transport owns (either twin)."""
        return {
            "timeout": self.timeout,
            "limits": httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS // 2
            ),
            "headers": {"User-Agent": "seerrperf"},
        }

    def _new_http(self) -> _HttpT:
        return self._http_class(**self.http_options())

    def _client(self) -> _HttpT:
        """The HTTP client for the next attempt (a new one in a forked child).

        Raises:
            ConfigurationError: the client was injected and created before
                this process was forked from its parent, so its connections
                are the parent's.
        """
        http = self._http
        if http is not None:
            return http
        if self._inherited_http:
            name = self._http_class.__name__
            raise ConfigurationError(
                f"this TMDB client was created with http_client= in process {self._parent_pid} "
                f"before it forked this worker (pid {os.getpid()}); the httpx.{name} holds the "
                "parent's connections and cannot be used here. Create the client (and its "
                "http_client) in each worker (gunicorn: in post_fork, or without --preload), "
                "or let the client own its HTTP client (no http_client=), which it renews "
                "after a fork."
            )
        with self._lock:
            if self._http is None:
                self._http = self._new_http()
            return self._http

    def _zero_counters(self) -> None:
        self.upstream_calls = 0
        self.retries = 0
        self.rate_limited = 0
        self.errors = 0
        self.latency = LatencyHistogram(window=LATENCY_WINDOW)

    def _after_fork_in_child(self) -> None:
        # Locks held by another thread at the fork stay held forever in the
        # child; the parent's sockets must not be used from here.
        self._lock = threading.Lock()
        self._zero_counters()  # a child's statistics are its own
        self._parent_pid = os.getppid()
        if self._http is not None:
            _INHERITED.append(self._http)
            self._inherited_http = not self._owns_http
            self._http = None

    def _mark_closed(self) -> _HttpT | None:
        """Mark the transport closed; return the owned HTTP client to close, if any."""
        was_open = not self.closed
        self.closed = True
        if not (was_open and self._owns_http):
            return None
        http, self._http = self._http, None
        return http


class AsyncTransport(BaseTransport[httpx.AsyncClient]):
    """The async I/O of a GET: stream ``httpx.AsyncClient`` responses and ``sleep``, as decided.

    Each attempt runs under ``anyio.fail_after`` with what is left of the
    budget, so the deadline holds whatever the peer does.

    Args:
        http_client: An ``httpx.AsyncClient`` to use (not closed here); by
            default the transport owns one with keep-alive.
        sleep: Awaitable sleep for retries and the throttle.
        **settings: The :class:`BaseTransport` arguments.
    """

    _http_class = httpx.AsyncClient

    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self._sleep = _validate.function("sleep", sleep)

    async def aget(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` with ``query`` within the timeout, retrying as decided.

        Raises:
            TmdbError: the matching subclass, once no retry is left.
            ConfigurationError: an injected ``http_client`` created before a fork.
        """
        exchange = self.exchange(path, query)
        throttle = self.throttle
        decision: Decision = exchange.paused() or exchange.slot(await throttle.areserve())
        while True:
            if isinstance(decision, Return):
                return decision.value
            if not isinstance(decision, Send) and decision.pause:
                # A 429's Retry-After: every request (of every process) waits.
                await throttle.apause(decision.pause)
            if isinstance(decision, Raise):
                raise decision.error
            if isinstance(decision, Retry):
                if decision.delay:
                    await self._sleep(decision.delay)
                decision = exchange.paused() or exchange.slot(await throttle.areserve())
                continue
            if decision.wait:
                await self._sleep(decision.wait)
            exchange.begin()
            decision = await self._attempt(exchange)

    async def _attempt(self, exchange: Exchange) -> Decision:
        http = self._client()
        limit = exchange.remaining()
        status = 0
        try:
            with anyio.fail_after(max(limit, 0.0)):
                async with http.stream(
                    "GET", exchange.url, params=exchange.params, headers=exchange.headers,
                    timeout=limit,
                ) as response:  # fmt: skip
                    status = response.status_code
                    # An in-memory response (httpx.MockTransport) is read and decoded already.
                    loaded = response.is_stream_consumed
                    reader = exchange.reader(status, response.headers, decoded=loaded)
                    if loaded:
                        reader.feed(response.content)
                    else:
                        async for chunk in response.aiter_raw():
                            if reader.feed(chunk):
                                break
                    body = reader.finish()
        except TimeoutError:
            return exchange.timed_out()
        except httpx.TransportError as exc:
            return exchange.failed(exc)
        except BodyRefused as refusal:
            return exchange.refused(status, refusal)
        return exchange.answered(status, response.headers, body)

    async def aclose(self) -> None:
        """Close the owned HTTP client (an injected one stays open)."""
        http = self._mark_closed()
        if http is not None:
            await http.aclose()


class Transport(BaseTransport[httpx.Client]):
    """The sync I/O of a GET: stream ``httpx.Client`` responses and ``time.sleep``, as decided.

    A blocking read cannot be interrupted from its own thread, so each
    attempt runs on a worker thread (one per connection at most) while the
    calling thread waits for it with what is left of the budget: the caller
    is answered by the deadline whatever the peer does. A worker left behind
    by a timed-out caller stops at the deadline too (its reads are bounded by
    the same budget, and it checks the deadline after every chunk), then
    drops the connection.

    Args:
        http_client: An ``httpx.Client`` to use (not closed here); by
            default the transport owns one with keep-alive.
        sleep: Sleep for retries and the throttle.
        **settings: The :class:`BaseTransport` arguments.
    """

    _http_class = httpx.Client

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, **settings: Any) -> None:
        super().__init__(**settings)
        self._sleep = _validate.function("sleep", sleep)
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None

    def get(self, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` with ``query`` within the timeout, retrying as decided.

        Raises:
            TmdbError: the matching subclass, once no retry is left.
            ConfigurationError: an injected ``http_client`` created before a fork.
        """
        exchange = self.exchange(path, query)
        decision: Decision = exchange.next()
        while True:
            if isinstance(decision, Return):
                return decision.value
            if not isinstance(decision, Send) and decision.pause:
                # A 429's Retry-After: every request (of every process) waits.
                self.throttle.pause(decision.pause)
            if isinstance(decision, Raise):
                raise decision.error
            if isinstance(decision, Retry):
                if decision.delay:
                    self._sleep(decision.delay)
                decision = exchange.next()
                continue
            if decision.wait:
                self._sleep(decision.wait)
            exchange.begin()
            decision = self._attempt(exchange)

    def _attempt(self, exchange: Exchange) -> Decision:
        http = self._client()
        limit = exchange.remaining()
        future = self._pool().submit(self._fetch, http, exchange, limit)
        try:
            status, headers, body = future.result(timeout=max(limit, 0.0))
        except TimeoutError:
            future.cancel()  # if it has not started; a running read stops by itself
            return exchange.timed_out()
        except httpx.TransportError as exc:
            return exchange.failed(exc)
        except _Refused as refused:
            return exchange.refused(refused.status, refused.refusal)
        return exchange.answered(status, headers, body)

    @staticmethod
    def _fetch(
        http: httpx.Client, exchange: Exchange, limit: float
    ) -> tuple[int, httpx.Headers, bytes]:
        """One attempt's I/O, on a worker thread; decides nothing."""
        with http.stream(
            "GET", exchange.url, params=exchange.params, headers=exchange.headers, timeout=limit
        ) as response:
            status = response.status_code
            loaded = response.is_stream_consumed  # in memory (httpx.MockTransport)
            try:
                reader = exchange.reader(status, response.headers, decoded=loaded)
                if loaded:
                    reader.feed(response.content)
                else:
                    for chunk in response.iter_raw():
                        if reader.feed(chunk):
                            break
                        if exchange.remaining() <= 0:  # the caller has gone: stop reading
                            raise TimeoutError
                body = reader.finish()
            except BodyRefused as refusal:
                raise _Refused(status, refusal) from None
            return status, response.headers, body

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        workers = self._workers
        if workers is None:
            with self._lock:
                if self._workers is None:
                    self._workers = concurrent.futures.ThreadPoolExecutor(
                        MAX_CONNECTIONS, thread_name_prefix="seerrperf-tmdb"
                    )
                workers = self._workers
        return workers

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._workers = None  # the parent's worker threads do not exist here

    def close(self) -> None:
        """Close the owned HTTP client (an injected one stays open) and the workers."""
        http = self._mark_closed()
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)
        if http is not None:
            http.close()


class _Refused(Exception):
    """A refused body, carried from a worker thread with the response's status."""

    def __init__(self, status: int, refusal: BodyRefused) -> None:
        super().__init__(str(refusal))
        self.status = status
        self.refusal = refusal
