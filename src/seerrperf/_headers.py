"""HTTP caching headers: Cache-Control, ETag, HTTP dates and 304 decisions.

Everything here is pure (no I/O, no clock unless one is passed in), so the
same logic serves every framework: Starlette/FastAPI through
:mod:`seerrperf.starlette`, Django and Flask through the header dicts.

Standards: RFC 9111 (Cache-Control), RFC 5861 (stale-while-revalidate,
stale-if-error), RFC 8246 (immutable), RFC 9110 (ETag, HTTP-date,
If-None-Match, If-Modified-Since).

What we build is validated strictly (``ConfigurationError``); what a peer
sends is read leniently, as RFC 9111 4.2.1 asks of recipients, and never
raises unless strict parsing is asked for (``HeaderParseError``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict, Unpack

from . import _validate
from ._errors import ConfigurationError, HeaderParseError

__all__ = [
    "CacheControl",
    "cache_control",
    "canonical_json",
    "etag_for",
    "http_date",
    "immutable_headers",
    "is_not_modified",
    "no_store_headers",
    "private_headers",
    "swr_headers",
]

ONE_YEAR = 31_536_000
# RFC 9111 1.2.2: a recipient must treat larger delta-seconds as 2**31.
MAX_SECONDS = 2**31

_SECONDS = ("max_age", "s_maxage", "stale_while_revalidate", "stale_if_error")
_STORING = (*_SECONDS, "immutable")
# RFC 9111 5.2.2.4/5.2.2.7: qualified forms list field names; like most caches
# we treat them as the unqualified, stricter directive.
_QUALIFIABLE = frozenset({"no_cache", "private"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII except '"', ',' and '\': nothing that could end the value,
# start another directive or another header line.
_SAFE_VALUE = re.compile(r"[ !#-+\--\[\]-~]*")
_DIGITS = re.compile(r"[0-9]+")
# RFC 9110 5.6.4 quoted-string: qdtext or quoted-pair, obs-text included.
_QUOTED = r'"(?P<quoted>(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*)"'
# RFC 9111 5.2: token [ "=" ( token / quoted-string ) ], no space around "=".
_DIRECTIVE = re.compile(
    rf"(?P<name>{_TOKEN.pattern})(?:=(?:(?P<bare>{_TOKEN.pattern})|{_QUOTED}))?"
)
# RFC 9110 5.5: a recipient replaces CR, LF and NUL in a field value with SP.
_DANGEROUS = re.compile(r"[\r\n\x00]")
# Directives that only ever allow more caching: an invalid one is ignored.
_LOOSENING = frozenset({"public", "immutable"})
_ENTITY_TAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
_SHOWN_PROBLEMS = 3

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
_MONTH = r"(?P<month>" + "|".join(_MONTHS) + ")"
_HTTP_DATES = (
    # IMF-fixdate, then the two obsolete forms recipients must still accept.
    re.compile(
        rf"(?:{'|'.join(_WEEKDAYS)}), (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT"
    ),
    re.compile(
        r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
        rf"(?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT"
    ),
    re.compile(
        rf"(?:{'|'.join(_WEEKDAYS)}) {_MONTH} (?P<day>[ 0-9][0-9]) {_TIME} (?P<year>[0-9]{{4}})"
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheControl:
    """Cache-Control response directives (RFC 9111, RFC 5861, RFC 8246), validated.

    Field names are the directive names with ``_`` for ``-``. ``str(cc)`` and
    :meth:`to_header` give the canonical header value, in field order;
    :meth:`parse` reads one back and ``CacheControl.parse(str(cc)) == cc``.

    Attributes:
        public: Shared caches may store the response even when they normally
            would not (e.g. a request with ``Authorization``).
        private: Only the user's browser may store it; never a CDN or proxy.
        no_cache: Caches may store it but must revalidate before every reuse.
        no_store: Nobody may store it (errors, secrets, one-off answers).
        max_age: Seconds the response stays fresh.
        s_maxage: Freshness for shared caches only, overriding ``max_age``.
        stale_while_revalidate: Seconds a stale response may still be served
            while the cache refreshes it in the background (RFC 5861).
        stale_if_error: Seconds a stale response may be served when the
            origin fails (RFC 5861).
        must_revalidate: Once stale, never serve without revalidating.
        proxy_revalidate: ``must_revalidate`` for shared caches only.
        must_understand: Store only if the status code's caching rules are known.
        no_transform: Intermediaries must not transform the content.
        immutable: The body never changes while fresh; browsers skip
            revalidation on reload (RFC 8246).
        extensions: Other directives as ``(name, value)`` pairs, in order;
            ``value`` is ``None`` for a bare directive. Names are lower-case
            tokens; values are printable ASCII without ``"``, ``,`` or ``\\``.

    Building one from our own arguments is strict; :meth:`parse` reads a
    peer's header leniently into the most restrictive valid instance.

    Raises:
        ConfigurationError: Seconds that are not integers in
            ``0..2147483648``; ``public`` with ``private``; ``no_store`` with
            ``max_age``, ``s_maxage``, ``stale_while_revalidate``,
            ``stale_if_error`` or ``immutable``; ``private`` with ``s_maxage``;
            ``immutable`` without a positive ``max_age``; an extension whose
            name is not a lower-case token or a known directive, a duplicate
            extension, or a value with CR, LF, a comma or another unsafe
            character.
    """

    public: bool = False
    private: bool = False
    no_cache: bool = False
    no_store: bool = False
    max_age: int | None = None
    s_maxage: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    no_transform: bool = False
    immutable: bool = False
    extensions: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        for name in _FIELDS.values():
            value = getattr(self, name)
            if name in _SECONDS:
                if value is not None:
                    _validate.whole_seconds(name, value, maximum=MAX_SECONDS)
            else:
                _validate.flag(name, value)
        conflict = _first_conflict({name: getattr(self, name) for name in _FIELDS.values()})
        if conflict is not None:
            raise ConfigurationError(conflict[0])
        _check_extensions(self.extensions)

    def to_header(self) -> str:
        """Return the canonical Cache-Control header value.

        Returns:
            Directives in field order, then the extensions, joined by ``", "``;
            an empty string when no directive is set.
        """
        parts: list[str] = []
        for directive, name in _FIELDS.items():
            value = getattr(self, name)
            if value is True:
                parts.append(directive)
            elif name in _SECONDS and value is not None:
                parts.append(f"{directive}={value}")
        for name, extension_value in self.extensions:
            if extension_value is None:
                parts.append(name)
            elif _TOKEN.fullmatch(extension_value):
                parts.append(f"{name}={extension_value}")
            else:
                parts.append(f'{name}="{extension_value}"')
        return ", ".join(parts)

    def __str__(self) -> str:
        return self.to_header()

    @classmethod
    def parse(cls, value: str, *, strict: bool = False) -> CacheControl:
        """Read a Cache-Control header value sent by a peer (an upstream, a CDN).

        By default the reading is lenient, as RFC 9111 4.2.1 and 5.2 ask of
        recipients, and never raises: whatever a peer sends gives the most
        restrictive meaning a cache could take from it.

        - Names are case-insensitive; arguments may be tokens or quoted
          strings (``max-age="60"``); empty list members are skipped.
        - Conflicts keep the more restrictive directive: ``public, private``
          reads as ``private``; ``no-store`` drops ``max-age``, ``s-maxage``,
          ``stale-*`` and ``immutable``; ``private`` drops ``s-maxage``;
          ``immutable`` without a positive ``max-age`` is dropped.
        - An invalid ``max-age``, ``s-maxage`` or ``stale-*`` argument
          (missing, not digits, spaces around ``=``) and the same directive
          repeated with different arguments read as ``0``: the response is
          stale. Seconds above 2147483648 read as 2147483648 (RFC 9111 1.2.2).
        - A flag given an argument (``no-store=1``) or malformed counts when
          it restricts caching and is ignored when it allows more
          (``public``, ``immutable``). The qualified ``no-cache="Set-Cookie"``
          and ``private="..."`` read as plain ``no_cache`` / ``private``.
        - Unknown directives are kept in ``extensions`` (names lower-cased,
          the first of duplicates) when their value is printable ASCII without
          ``,``, ``"`` or ``\\``; others are ignored, as RFC 9111 5.2 allows,
          so a proxy that re-emits the result cannot pass on an injection.
        - CR, LF and NUL are read as spaces (RFC 9110 5.5); a malformed
          member (``public; max-age=60``) or an unterminated quoted string
          counts as described above for its leading name, if it has one.

        Args:
            value: The header value, e.g. ``"public, max-age=60"``; join
                several header lines with ``", "``.
            strict: Raise instead of resolving: for values we check
                ourselves (tests, configuration read from a file).

        Returns:
            The directives as a validated :class:`CacheControl`;
            ``CacheControl.parse(str(cc)) == cc`` for every ``cc``.

        Raises:
            HeaderParseError: Only with ``strict=True``: the value breaks the
                grammar or needed one of the resolutions above (clamping
                huge seconds is not counted). The message names the problems.
            ConfigurationError: ``value`` is not a ``str`` or ``strict`` not a
                ``bool`` (programming errors, never the peer's).
        """
        _validate.instance("value", value, str, "a str")
        _validate.flag("strict", strict)
        known, extensions, problems = _read_cache_control(value)
        if strict and problems:
            listed = "; ".join(problems[:_SHOWN_PROBLEMS])
            more = len(problems) - _SHOWN_PROBLEMS
            raise HeaderParseError(
                f"Cache-Control {_validate.shown(value)} is not valid: {listed}"
                + (f"; and {more} more" if more > 0 else "")
            )
        return cls(**known, extensions=extensions)  # type: ignore[arg-type]


# Header directive -> field name, in canonical order: "max-age" -> "max_age".
_FIELDS = {f.name.replace("_", "-"): f.name for f in fields(CacheControl) if f.name != "extensions"}


def _first_conflict(values: Mapping[str, object]) -> tuple[str, str] | None:
    """The first combination rule ``values`` break: ``(message, field to drop)``.

    The field to drop is the less restrictive one, so dropping it resolves
    the conflict the way RFC 9111 4.2.1 asks of a recipient.
    """
    if values["public"] and values["private"]:
        return "public and private cannot be combined", "public"
    if values["no_store"]:
        for name in _STORING:
            if values[name] is not None and values[name] is not False:
                return f"no_store cannot be combined with {name}: nothing may be stored", name
    if values["private"] and values["s_maxage"] is not None:
        return (
            "private cannot be combined with s_maxage: s-maxage is for shared caches",
            "s_maxage",
        )
    if values["immutable"] and not values["max_age"]:
        return "immutable needs a positive max_age", "immutable"
    return None


def _check_extensions(extensions: object) -> None:
    if not isinstance(extensions, tuple):
        raise ConfigurationError("extensions must be a tuple of (name, value) pairs")
    seen: set[str] = set()
    for item in extensions:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ConfigurationError(f"extensions must hold (name, value) pairs, got {item!r}")
        name, value = item
        if not isinstance(name, str) or not _TOKEN.fullmatch(name) or name != name.lower():
            raise ConfigurationError(f"extension name {name!r} must be a lower-case token")
        if name in _FIELDS:
            raise ConfigurationError(f"extension {name!r} is a known directive: use its field")
        if name in seen:
            raise ConfigurationError(f"duplicate extension {name!r}")
        seen.add(name)
        if value is not None and not (isinstance(value, str) and _SAFE_VALUE.fullmatch(value)):
            raise ConfigurationError(
                f"extension {name!r} value {value!r} must be printable ASCII without "
                "CR, LF, comma, '\"' or '\\'"
            )


def _read_cache_control(
    value: str,
) -> tuple[dict[str, bool | int], tuple[tuple[str, str | None], ...], list[str]]:
    """Read a peer's Cache-Control leniently: ``(fields, extensions, problems)``.

    ``fields`` and ``extensions`` always make a valid :class:`CacheControl`;
    ``problems`` says what had to be resolved (empty for a clean value).
    """
    problems: list[str] = []
    if _DANGEROUS.search(value):
        problems.append("CR, LF or NUL in the value")
        value = _DANGEROUS.sub(" ", value)
    elements, unterminated = _split_list(value)
    if unterminated:
        problems.append("unterminated quoted string")
    readings: dict[str, list[bool | int]] = {}
    extensions: dict[str, str | None] = {}
    for element in elements:
        match = _DIRECTIVE.fullmatch(element)
        if match is None:
            head = _TOKEN.match(element)
            name = _FIELDS.get(head[0].lower()) if head else None
            problems.append(f"malformed directive {_validate.shown(element)} ({_reading(name)})")
            if name is not None:
                readings.setdefault(name, []).append(_invalid(name))
            continue
        directive = match["name"].lower()
        raw = match["bare"]
        if match["quoted"] is not None:
            raw = re.sub(r"\\(.)", r"\1", match["quoted"])
        name = _FIELDS.get(directive)
        if name is not None:
            readings.setdefault(name, []).append(_read_known(directive, name, raw, problems))
        elif raw is not None and not _SAFE_VALUE.fullmatch(raw):
            problems.append(f"extension {directive!r} has a value that cannot be kept (ignored)")
        elif directive not in extensions:
            extensions[directive] = raw
        elif extensions[directive] != raw:
            problems.append(f"extension {directive!r} repeated with another value (first kept)")
    known: dict[str, bool | int] = {}
    for name, values in readings.items():
        if name not in _SECONDS:
            known[name] = any(values)  # a present restrictive flag counts once
        elif len(set(values)) == 1:
            known[name] = values[0]
        else:  # RFC 9111 4.2.1: conflicting freshness reads as stale
            problems.append(f"{_directive(name)} repeated with different values (read as 0)")
            known[name] = 0
    current: dict[str, object] = {name: _unset(name) for name in _FIELDS.values()}
    current.update(known)
    while (conflict := _first_conflict(current)) is not None:
        message, drop = conflict
        problems.append(f"{message} ({_directive(drop)} ignored)")
        current[drop] = _unset(drop)
        del known[drop]
    return known, tuple(extensions.items()), problems


def _unset(name: str) -> bool | None:
    return None if name in _SECONDS else False


def _directive(name: str) -> str:
    return name.replace("_", "-")


def _reading(name: str | None) -> str:
    """How an unusable directive was read, for a problem's message."""
    if name is None:
        return "ignored"
    if name in _SECONDS:
        return "read as 0"
    return "counted" if _invalid(name) else "ignored"


def _invalid(name: str) -> bool | int:
    """How a known directive with an unusable argument reads: restrictive, or not at all."""
    if name in _SECONDS:
        return 0  # RFC 9111 4.2.1: invalid freshness information means stale
    return name not in _LOOSENING


def _read_known(directive: str, name: str, raw: str | None, problems: list[str]) -> bool | int:
    if name in _SECONDS:
        if raw is None or not _DIGITS.fullmatch(raw):
            got = "no value" if raw is None else _validate.shown(raw)
            problems.append(f"{directive} needs whole seconds, got {got} ({_reading(name)})")
            return 0
        digits = raw.lstrip("0") or "0"
        if len(digits) > len(str(MAX_SECONDS)):  # int() refuses over 4300 digits
            return MAX_SECONDS
        return min(int(digits), MAX_SECONDS)
    if raw is not None and name not in _QUALIFIABLE:
        problems.append(f"{directive} takes no value ({_reading(name)})")
        return _invalid(name)
    return True


def _split_list(value: str) -> tuple[list[str], bool]:
    """Split a comma-separated header list, keeping commas inside quoted strings.

    Returns:
        The trimmed, non-empty members, and whether a quoted string was left
        open (then the last member runs to the end of the value).
    """
    elements: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append(value[start:index])
            start = index + 1
    elements.append(value[start:])
    return [stripped for element in elements if (stripped := element.strip(" \t"))], quoted


class _Directives(TypedDict, total=False):
    public: bool
    private: bool
    no_cache: bool
    no_store: bool
    max_age: int | None
    s_maxage: int | None
    stale_while_revalidate: int | None
    stale_if_error: int | None
    must_revalidate: bool
    proxy_revalidate: bool
    must_understand: bool
    no_transform: bool
    immutable: bool
    extensions: tuple[tuple[str, str | None], ...]


def cache_control(**directives: Unpack[_Directives]) -> str:
    """Build a validated Cache-Control header value.

    Args:
        **directives: The fields of :class:`CacheControl`, e.g.
            ``cache_control(public=True, max_age=60)``.

    Returns:
        The canonical header value, e.g. ``"public, max-age=60"``.

    Raises:
        ConfigurationError: The directives break a rule of :class:`CacheControl`.
    """
    return CacheControl(**directives).to_header()


def immutable_headers(max_age: int = ONE_YEAR, *, now: dt.datetime | None = None) -> dict[str, str]:
    """Headers for content that never changes under its URL (versioned images, assets).

    Args:
        max_age: Freshness in seconds; a year by default.
        now: The response time, timezone-aware; the current time when ``None``.

    Returns:
        ``Cache-Control: public, max-age=N, immutable`` and a matching
        ``Expires`` for HTTP/1.0 caches.

    Raises:
        ConfigurationError: ``max_age`` is not a positive whole number of
            seconds, or ``now`` is naive.
    """
    header = cache_control(public=True, max_age=max_age, immutable=True)
    start = dt.datetime.now(dt.UTC) if now is None else now
    return {"Cache-Control": header, "Expires": http_date(start + dt.timedelta(seconds=max_age))}


def swr_headers(
    max_age: int,
    stale_while_revalidate: int,
    *,
    stale_if_error: int | None = None,
    shared: bool = True,
) -> dict[str, str]:
    """Headers for API data that may be served slightly stale while it refreshes.

    Args:
        max_age: Seconds the response is fresh.
        stale_while_revalidate: Further seconds a cache may serve it stale
            while refetching in the background.
        stale_if_error: Seconds a cache may serve it stale when the origin fails.
        shared: ``True`` marks it ``public`` (CDNs may store it); ``False``
            marks it ``private`` (per-user data, browser only).

    Returns:
        ``{"Cache-Control": ...}``, e.g.
        ``public, max-age=60, stale-while-revalidate=600``.

    Raises:
        ConfigurationError: A value is not a whole number of seconds.
    """
    _validate.flag("shared", shared)
    header = cache_control(
        public=shared,
        private=not shared,
        max_age=max_age,
        stale_while_revalidate=stale_while_revalidate,
        stale_if_error=stale_if_error,
    )
    return {"Cache-Control": header}


def private_headers(max_age: int = 0) -> dict[str, str]:
    """Headers for per-user responses: only the user's browser may keep them.

    Args:
        max_age: Seconds the browser may reuse the response without asking;
            ``0`` means it may keep a copy but must revalidate every time.

    Returns:
        ``{"Cache-Control": "private, no-cache"}`` for ``max_age=0``, else
        ``private, max-age=N``. Never ``s-maxage``.

    Raises:
        ConfigurationError: ``max_age`` is not a whole number of seconds.
    """
    _validate.whole_seconds("max_age", max_age, maximum=MAX_SECONDS)
    if max_age == 0:
        return {"Cache-Control": cache_control(private=True, no_cache=True)}
    return {"Cache-Control": cache_control(private=True, max_age=max_age)}


def no_store_headers() -> dict[str, str]:
    """Headers for responses nobody may store: errors, secrets, health checks.

    Returns:
        ``{"Cache-Control": "no-store"}``.
    """
    return {"Cache-Control": cache_control(no_store=True)}


def canonical_json(data: Any) -> bytes:
    """Serialise ``data`` to the same bytes in every process: sorted keys, no spaces.

    These are the bytes :func:`etag_for` hashes for non-string data, so a
    framework helper that sends them gets an ``ETag`` that matches its body.

    Raises:
        ConfigurationError: ``data`` is not JSON-serialisable (or contains NaN,
            or nests too deeply to serialise).
    """
    try:
        text = json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"data must be JSON-serialisable: {type(exc).__name__}: {exc}"
        ) from exc
    except RecursionError:
        raise ConfigurationError(
            "data must be JSON-serialisable: it nests too deeply (RecursionError)"
        ) from None
    return text.encode("utf-8")


def etag_for(data: Any, *, weak: bool = False) -> str:
    """Compute an entity tag that is stable across processes and machines.

    The tag is the first 128 bits of SHA-256 over canonical bytes: ``bytes``
    as they are, ``str`` as UTF-8, anything else as JSON with sorted keys and
    no spaces (so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` match).

    Args:
        data: ``bytes``, ``bytearray``, ``memoryview``, ``str`` or
            JSON-serialisable data.
        weak: Prefix ``W/``: equal meaning, not necessarily equal bytes.

    Returns:
        A quoted entity tag, e.g. ``"3a7bd3e2360a3d29eea436fcfb7e44c7"``.

    Raises:
        ConfigurationError: ``data`` is not JSON-serialisable (or contains NaN).
    """
    _validate.flag("weak", weak)
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    elif isinstance(data, str):
        raw = data.encode("utf-8")
    else:
        raw = canonical_json(data)
    tag = f'"{hashlib.sha256(raw).hexdigest()[:32]}"'
    return f"W/{tag}" if weak else tag


def http_date(when: dt.datetime) -> str:
    """Format a time as an HTTP-date (IMF-fixdate), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``.

    Args:
        when: A timezone-aware datetime; microseconds are dropped.

    Returns:
        The IMF-fixdate in GMT.

    Raises:
        ConfigurationError: ``when`` is naive. Naive datetimes are refused
            rather than guessed: ``datetime.now()`` is local time and would
            shift the date by the UTC offset.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ConfigurationError(
            f"http_date needs a timezone-aware datetime, got naive {when.isoformat()}"
        )
    utc = when.astimezone(dt.UTC)
    return (
        f"{_WEEKDAYS[utc.weekday()]}, {utc.day:02d} {_MONTHS[utc.month - 1]} {utc.year:04d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} GMT"
    )


def _parse_http_date(value: str) -> dt.datetime | None:
    """Read any of the three HTTP-date forms; ``None`` when it is not one."""
    for pattern in _HTTP_DATES:
        match = pattern.fullmatch(value.strip())
        if match is None:
            continue
        year = int(match["year"])
        if year < 100:  # rfc850-date: two-digit years, POSIX pivot
            year += 1900 if year >= 69 else 2000
        try:
            return dt.datetime(
                year,
                _MONTHS.index(match["month"]) + 1,
                int(match["day"]),
                int(match["hour"]),
                int(match["minute"]),
                int(match["second"]),
                tzinfo=dt.UTC,
            )
        except ValueError:  # 31 Feb, 25:00:00
            return None
    return None


def _request_header(headers: Mapping[str, str], name: str) -> str | None:
    """All lines of one request header, joined as a list, matched case-insensitively."""
    values = [value for key, value in headers.items() if key.lower() == name]
    return ", ".join(values) if values else None


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")


def is_not_modified(
    request_headers: Mapping[str, str],
    *,
    etag: str | None = None,
    last_modified: dt.datetime | None = None,
) -> bool:
    """Decide whether a GET or HEAD request can be answered with 304 Not Modified.

    Follows RFC 9110 13.2.2: ``If-None-Match`` is evaluated first, with the
    weak comparison (``W/"1"`` matches ``"1"``) and lists; only a field value
    that is exactly ``*`` (spaces around it aside) matches any representation.
    When it is present ``If-Modified-Since`` is ignored. Otherwise
    ``If-Modified-Since`` matches when ``last_modified`` (to the second) is
    not later than it. The request's headers come from a peer: they are read
    leniently and never raise; a malformed list member or an invalid date
    never matches, so a bad header costs a full answer, never a wrong 304.
    Only GET and HEAD may get a 304: other methods need 412 handling, which
    this function does not do.

    Args:
        request_headers: The request's headers, any mapping (Starlette's
            ``request.headers``, a dict); names are matched case-insensitively.
        etag: The current representation's entity tag, quoted, as from
            :func:`etag_for`.
        last_modified: When the representation last changed, timezone-aware.

    Returns:
        ``True`` when the client's copy is current.

    Raises:
        ConfigurationError: ``etag`` is not a quoted entity tag, or
            ``last_modified`` is naive (our arguments, never the request's).
    """
    if etag is not None and not _ENTITY_TAG.fullmatch(etag):
        raise ConfigurationError(
            f'etag must be a quoted entity tag like "abc" or W/"abc", got {etag!r}'
        )
    if last_modified is not None and last_modified.utcoffset() is None:
        raise ConfigurationError("last_modified must be a timezone-aware datetime")
    if_none_match = _request_header(request_headers, "if-none-match")
    if if_none_match is not None:
        if if_none_match.strip(" \t") == "*":  # RFC 9110 13.1.2: "*" is the whole value
            return True
        if etag is None:
            return False
        # etag is well-formed, so only a well-formed member can compare equal.
        members, _ = _split_list(if_none_match)
        return any(_opaque(member) == _opaque(etag) for member in members)
    if_modified_since = _request_header(request_headers, "if-modified-since")
    if if_modified_since is None or last_modified is None:
        return False
    since = _parse_http_date(if_modified_since)
    return since is not None and last_modified.replace(microsecond=0) <= since
