"""Pure parts of the TMDB client: TTL tiers, input checks, retry timing, peer text, image URLs.

Nothing here does I/O, so it is tested without a network and shared by
everything that talks to TMDB. Argument rules come from
:mod:`seerrperf._validate`; this module adds only what is TMDB's own (which
paths form a tier, what an id, a page or a language code looks like).
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import quote, urlsplit

from seerrperf import _validate
from seerrperf._errors import ConfigurationError

__all__ = [
    "ENDPOINTS",
    "IMAGE_BASE_URL",
    "IMAGE_SIZES",
    "TtlPolicy",
    "image_base_from",
    "image_url",
    "peer_text",
]

HOUR: Final = 3600
DAY: Final = 24 * HOUR

# Endpoint names, in match order, with the path pattern each covers. Paths are
# relative to the API root (``/3``) and have no query string.
_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("tv_season", r"/tv/\d+/season/\d+(?:/.*)?"),
    ("movie", r"/movie/\d+"),
    ("tv", r"/tv/\d+"),
    ("movie_extra", r"/movie/(?:\d+/.+|upcoming|popular|now_playing|top_rated)"),
    ("tv_extra", r"/tv/(?:\d+/.+|popular|on_the_air|airing_today|top_rated)"),
    ("person", r"/person/\d+(?:/.*)?"),
    ("collection", r"/collection/\d+(?:/.*)?"),
    ("company", r"/(?:company|network)/\d+(?:/.*)?"),
    ("search_keyword", r"/search/(?:keyword|company)"),
    ("search", r"/search/(?:multi|movie|tv|person|collection)"),
    ("discover", r"/discover/(?:movie|tv)"),
    ("trending", r"/trending/(?:all|movie|tv|person)/(?:day|week)"),
    ("find", r"/find/[^/]+"),
    ("configuration", r"/configuration"),
    ("languages", r"/configuration/languages"),
    ("countries", r"/configuration/countries"),
    ("genres", r"/genre/(?:movie|tv)/list"),
    ("watch_provider_regions", r"/watch/providers/regions"),
    ("watch_providers", r"/watch/providers/(?:movie|tv)"),
    # Only the keyword itself: Seerr's getMoviesByKeyword (/keyword/{id}/movies)
    # passes no TTL, so it gets the default.
    ("keyword", r"/keyword/\d+"),
    ("certifications", r"/certification/(?:movie|tv)/list"),
)
_COMPILED: Final = tuple((name, re.compile(pattern)) for name, pattern in _PATTERNS)

#: Every endpoint name a :class:`TtlPolicy` knows, plus ``"default"``.
ENDPOINTS: Final[frozenset[str]] = frozenset(name for name, _ in _PATTERNS) | {"default"}

# Seerr's TTLs (server/api/themoviedb/index.ts); anything it does not name uses
# its external API default of 300 s.
_SEERR: Final[Mapping[str, float]] = MappingProxyType(
    {
        "movie": 12 * HOUR,
        "tv": 12 * HOUR,
        "tv_season": 300,
        "movie_extra": 300,
        "tv_extra": 300,
        "person": 300,
        "collection": 300,
        "company": 300,
        "search": 300,
        "search_keyword": DAY,
        "discover": 300,
        "trending": 300,
        "find": 300,
        "configuration": 300,
        "languages": DAY,
        "countries": DAY,
        "genres": DAY,
        "watch_provider_regions": DAY,
        "watch_providers": DAY,
        "keyword": 7 * DAY,
        "certifications": 7 * DAY,
        "default": 300,
    }
)

# By how often the data changes: the seed analysis' values where it names
# them, Seerr's everywhere else.
_BY_VOLATILITY: Final[Mapping[str, float]] = MappingProxyType(
    {
        **_SEERR,
        "movie": 6 * HOUR,
        "tv": 2 * HOUR,
        "configuration": DAY,
        "languages": DAY,
        "watch_providers": 12 * HOUR,
    }
)

#: Largest ``stale_while_revalidate`` fraction: ten TTLs of stale serving.
MAX_STALE_RATIO: Final = 10.0


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    """How long each kind of TMDB response stays fresh, and how long stale.

    Use :meth:`by_volatility` (the default: short TTLs for data that changes
    often, long ones for reference data) or :meth:`seerr` (Seerr's table
    exactly), and :meth:`with_overrides` to change tiers. Every duration is
    in seconds and may be fractional.

    Attributes:
        ttls: Seconds fresh per endpoint name (see :data:`ENDPOINTS`); ``0``
            means do not cache.
        stale_while_revalidate: How long after expiry a stale entry is still
            served while one background refresh runs, as a fraction of the
            endpoint's TTL (0 to 10).
        stale_if_error: Seconds after expiry during which a stale entry is
            served when TMDB fails (an outage), for every tier.
        not_found_ttl: Seconds a 404 is remembered, so a deleted id does not
            hammer TMDB.

    Raises:
        ConfigurationError: an unknown or missing endpoint name, or a value
            that is not a finite duration >= 0 (ten years at most).
    """

    ttls: Mapping[str, float]
    stale_while_revalidate: float = 0.5
    stale_if_error: float = DAY
    not_found_ttl: float = 60

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ttls) - ENDPOINTS)
        if unknown:
            raise ConfigurationError(
                f"unknown TMDB endpoint(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(ENDPOINTS))}"
            )
        missing = sorted(ENDPOINTS - set(self.ttls))
        if missing:
            raise ConfigurationError(f"TTL policy lacks endpoint(s): {', '.join(missing)}")
        ttls = {
            name: _validate.duration(f"TTL for {name!r}", ttl) for name, ttl in self.ttls.items()
        }
        ratio = _validate.ratio(
            "stale_while_revalidate", self.stale_while_revalidate, maximum=MAX_STALE_RATIO
        )
        object.__setattr__(self, "ttls", MappingProxyType(ttls))
        object.__setattr__(self, "stale_while_revalidate", ratio)
        for name in ("stale_if_error", "not_found_ttl"):
            object.__setattr__(self, name, _validate.duration(name, getattr(self, name)))

    @classmethod
    def by_volatility(cls) -> TtlPolicy:
        """TTLs by how often the data changes (the default).

        Movie 6 h, tv 2 h (new seasons and episodes appear), configuration and
        languages 24 h, watch providers 12 h; Seerr's values for everything
        else (searches and lists 5 min, keywords and certifications 7 days).
        """
        return cls(_BY_VOLATILITY)

    @classmethod
    def seed(cls) -> TtlPolicy:
        """Deprecated alias of :meth:`by_volatility`; removed in the release after 0.2.

        .. deprecated:: 0.2.0
            Use :meth:`by_volatility`, which returns the same policy.
        """
        warnings.warn(
            "TtlPolicy.seed() is deprecated; use TtlPolicy.by_volatility() (the same policy)",
            DeprecationWarning,
            stacklevel=2,
        )
        return cls.by_volatility()

    @classmethod
    def seerr(cls) -> TtlPolicy:
        """Seerr's TTL table exactly (movie and tv 12 h)."""
        return cls(_SEERR)

    def with_overrides(self, overrides: Mapping[str, float]) -> TtlPolicy:
        """Return a copy with some endpoint TTLs replaced.

        Raises:
            ConfigurationError: an unknown endpoint name or a bad value.
        """
        return TtlPolicy(
            {**self.ttls, **overrides},
            stale_while_revalidate=self.stale_while_revalidate,
            stale_if_error=self.stale_if_error,
            not_found_ttl=self.not_found_ttl,
        )

    @staticmethod
    def endpoint_for(path: str) -> str:
        """Name the endpoint tier of an API path such as ``/movie/603``."""
        path = "/" + path.split("?", 1)[0].strip("/")
        for name, pattern in _COMPILED:
            if pattern.fullmatch(path):
                return name
        return "default"

    def ttl_for(self, path: str) -> float:
        """Seconds a response for ``path`` stays fresh."""
        return self.ttls[self.endpoint_for(path)]

    def swr_for(self, path: str) -> float:
        """Seconds after expiry that a stale response may be served while refreshing."""
        return self.ttl_for(path) * self.stale_while_revalidate


# --- input checks ---------------------------------------------------------------------

MEDIA_TYPES: Final = frozenset({"movie", "tv"})
TRENDING_TYPES: Final = frozenset({"all", "movie", "tv", "person"})
TIME_WINDOWS: Final = frozenset({"day", "week"})
EXTERNAL_SOURCES: Final = frozenset(
    {
        "imdb_id",
        "facebook_id",
        "instagram_id",
        "tvdb_id",
        "tiktok_id",
        "twitter_id",
        "wikidata_id",
        "youtube_id",
    }
)
MAX_PAGE: Final = 500
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(?:-[A-Z]{2})?")
_REGION: Final = re.compile(r"[A-Z]{2}")
_APPEND: Final = re.compile(r"[a-z_]+(?:/\d+)?")
_CREDENTIAL_PARAMS: Final = frozenset({"api_key", "access_token"})


def tmdb_id(arg: str, value: object) -> int:
    """Return ``value`` if it is a TMDB id: a positive ``int``."""
    return _validate.count(arg, value, minimum=1)


def check_page(value: object) -> int:
    """TMDB pages run from 1 to 500."""
    return _validate.count("page", value, minimum=1, maximum=MAX_PAGE)


def check_query(value: object) -> str:
    """Return a stripped, non-empty search query."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"query must be a non-empty string, got {_validate.shown(value)}")
    if len(value) > 500:
        raise ConfigurationError("query must be at most 500 characters")
    return value.strip()


def check_language(value: object) -> str:
    """Return ``value`` if it looks like a language tag (``en``, ``en-US``)."""
    if not isinstance(value, str) or not _LANGUAGE.fullmatch(value):
        raise ConfigurationError(
            f"language must look like 'en' or 'en-US', got {_validate.shown(value)}"
        )
    return value


def check_region(value: object, arg: str = "region") -> str:
    """Return ``value`` if it is an ISO 3166-1 country code (``US``)."""
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ConfigurationError(
            f"{arg} must be an ISO 3166-1 code like 'US', got {_validate.shown(value)}"
        )
    return value


def _url_problem(value: str, *, relative: bool = False) -> str | None:
    """What is wrong with ``value`` as a base URL, or ``None`` when nothing is.

    An absolute http(s) URL with a host and a valid port, without query,
    fragment or credentials, and without spaces or control characters (which
    would split a request line or a header); with ``relative``, an absolute
    path (``/img/``) is fine too.
    """
    if not value.isprintable() or any(char.isspace() for char in value):
        return "must not contain spaces or control characters"
    if "?" in value or "#" in value:  # an empty query or fragment is one too
        return "must not hold a query or fragment"
    if relative and value.startswith("/") and not value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return "must be an http(s) URL" + (" or a path starting with '/'" if relative else "")
    try:
        parts.port  # noqa: B018 -- urlsplit checks the port only when asked
    except ValueError:
        return "must have a port between 0 and 65535"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials"
    return None


def check_base_url(value: object) -> str:
    """Return an http(s) API root without a trailing slash.

    Raises:
        ConfigurationError: not an http(s) URL with a host, a port out of
            range, spaces or control characters (CR/LF), or it holds a query,
            a fragment or credentials.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"base_url must be a string, got {type(value).__name__}")
    problem = _url_problem(value)
    if problem is not None:
        raise ConfigurationError(f"base_url {problem}, got {_validate.shown(value)}")
    return value.rstrip("/")


def check_params(params: Mapping[str, object] | None) -> dict[str, str]:
    """Return query parameters as strings, ``None`` values dropped.

    Raises:
        ConfigurationError: a name that is not a non-empty printable string, a
            credential passed as a parameter, or a value that is not a
            ``str``, ``int``, ``float`` or ``bool``.
    """
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        _validate.name("parameter names", key)
        if key.lower() in _CREDENTIAL_PARAMS:
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


def check_append(parts: Iterable[str]) -> str:
    """Return ``append_to_response`` parts as one sorted, comma-joined value ("" for none)."""
    if isinstance(parts, str):
        parts = parts.split(",")
    chosen = sorted({p.strip() for p in parts if p.strip()})
    for part in chosen:
        if not _APPEND.fullmatch(part):
            raise ConfigurationError(f"append_to_response part {part!r} is not valid")
    return ",".join(chosen)


def segment(value: object, what: str) -> str:
    """Percent-encode one path segment; reject empty ones and dot segments."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text or text in {".", ".."}:
        raise ConfigurationError(f"{what} must be a non-empty string, got {_validate.shown(value)}")
    return quote(text, safe="")


def check_path(path: object) -> str:
    """Validate a generic API path like ``/movie/603/credits``.

    Raises:
        ConfigurationError: not a string starting with ``/``, or it holds a
            query, fragment, scheme, ``..`` or ``//``.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError(f"path must start with '/', got {_validate.shown(path)}")
    if "//" in path or "?" in path or "#" in path or "\\" in path:
        raise ConfigurationError("path must not contain '//', '?', '#' or '\\'; pass params=")
    parts = path.split("/")[1:]
    if any(p in {".", ".."} for p in parts) or any(not p.isprintable() or " " in p for p in parts):
        raise ConfigurationError("path must not contain dot segments, spaces or control characters")
    return path.rstrip("/") or "/"


# --- retry timing ---------------------------------------------------------------------


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header leniently: delta-seconds or an HTTP-date.

    It comes from a peer, so nothing in it raises: a value that is neither
    (``\xb2``, ``1.5``, ``-3``, an impossible date) reads as absent, and the
    caller falls back to its backoff schedule.

    Returns:
        Seconds to wait (>= 0, possibly ``inf`` for an absurd number), or
        None when absent or unparsable.
    """
    if value is None:
        return None
    value = value.strip()
    # str.isdigit() alone accepts "\xb2" and other digits float() refuses.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    try:
        return max(0.0, when.timestamp() - current)
    except (OverflowError, OSError, ValueError):
        return None


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff for retry ``attempt`` (0-based) with multiplicative jitter.

    ``jitter`` is a number in [0, 1) drawn by the caller, so the delay is
    ``min(cap, base * 2**attempt) * (0.5 + jitter / 2)``: between half and all
    of the exponential step, which spreads clients that failed together.
    """
    step = min(cap, base * math.pow(2, attempt))
    return step * (0.5 + jitter / 2)


# --- text from TMDB ---------------------------------------------------------------------

#: How much of a text from TMDB (a ``status_message``) a message may quote.
PEER_TEXT_LIMIT: Final = 200


def peer_text(text: str, limit: int = PEER_TEXT_LIMIT) -> str:
    """Make a text from TMDB safe to quote in a message or a log line.

    Control characters (CR, LF, ESC, NUL...), line and paragraph separators
    and invisible format characters (bidi overrides) are escaped as
    ``\\xNN`` / ``\\uNNNN``, so a quoted text can neither forge a log line nor
    hide what it says; the result holds at most about ``limit`` characters of
    the original, ``...`` marking a cut.
    """
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(
            char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
            for char in cut
        )
    return cut + "..." if len(text) > limit else cut


# --- images ---------------------------------------------------------------------------

#: TMDB's image root (``images.secure_base_url`` of ``/configuration``).
IMAGE_BASE_URL: Final = "https://image.tmdb.org/t/p/"
IMAGE_SIZES: Final[frozenset[str]] = frozenset(
    {
        "w45",
        "w92",
        "w154",
        "w185",
        "w300",
        "w342",
        "w500",
        "w780",
        "w1280",
        "h632",
        "original",
    }
)
_IMAGE_FILE: Final = re.compile(r"/[A-Za-z0-9_-]+\.(?:jpg|jpeg|png|svg|webp)")

ImageSize = Literal[
    "w45", "w92", "w154", "w185", "w300", "w342", "w500", "w780", "w1280", "h632", "original"
]


def check_image(size: object, file_path: object) -> tuple[str, str]:
    """Validate an image size and a single ``/name.ext`` file path."""
    size = _validate.choice("size", size, IMAGE_SIZES)
    if not isinstance(file_path, str) or not _IMAGE_FILE.fullmatch(file_path):
        raise ConfigurationError(
            "image file path must be a single '/name.ext' segment "
            "(letters, digits, '_' or '-', then .jpg/.jpeg/.png/.svg/.webp)"
        )
    return size, file_path


@functools.lru_cache(maxsize=64)
def _image_base(value: str) -> str | None:
    """``value`` with a trailing slash if it can be an image root, else ``None``."""
    if _url_problem(value, relative=True) is not None:
        return None
    return value if value.endswith("/") else value + "/"


def check_image_base(value: object) -> str:
    """Return an image root (absolute http(s) URL or absolute path) ending in ``/``.

    Raises:
        ConfigurationError: anything else (a query, a fragment, credentials,
            spaces, control characters, a bad port).
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"base_url must be a string, got {type(value).__name__}")
    checked = _image_base(value)
    if checked is None:
        raise ConfigurationError(
            "base_url must be an http(s) URL or a path starting with '/', without query, "
            f"fragment, credentials, spaces or control characters, got {_validate.shown(value)}"
        )
    return checked


def image_base_from(configuration: Mapping[str, object]) -> str | None:
    """The image root that TMDB's ``/configuration`` names, checked; ``None`` if unusable.

    Reads ``images.secure_base_url`` (``images.base_url`` is plain http). The
    value comes from a peer: it must be an absolute http(s) URL without query,
    credentials, spaces or control characters, or it is not used.
    """
    images = configuration.get("images")
    value = images.get("secure_base_url") if isinstance(images, Mapping) else None
    if not isinstance(value, str) or value.startswith("/") or len(value) > 2048:
        return None
    return _image_base(value)


def image_url(file_path: str, size: str = "w500", *, base_url: str = IMAGE_BASE_URL) -> str:
    """Build ``{base_url}{size}{file_path}``, by default on ``https://image.tmdb.org/t/p/``.

    Args:
        file_path: A TMDB image path such as ``/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg``.
        size: One of TMDB's sizes (``w92`` ... ``original``).
        base_url: The image root: TMDB's (the default), the one
            ``TmdbClient.image_base_url()`` reads from ``/configuration``, or
            your own image proxy (an absolute URL or a path such as
            ``"/imageproxy/tmdb/t/p/"``); a missing trailing slash is added.

    Raises:
        ConfigurationError: an unknown size, a path that is not a single
            ``/name.ext`` segment (no ``//``, ``://``, ``..`` or query string),
            or a ``base_url`` that is not an http(s) URL or absolute path, or
            that holds a query, fragment, credentials, spaces or control
            characters.
    """
    size, file_path = check_image(size, file_path)
    return f"{check_image_base(base_url)}{size}{file_path}"
