"""CacheControl.parse against werkzeug's parse_cache_control_header, on real-world headers.

werkzeug is an independent, widely used parser. On every header we build
the two agree exactly (a property test); on what real servers send they agree
except where RFC 9111 asks a recipient for more than werkzeug does. Each row
of the table names its source and every field where the readings differ,
with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from werkzeug.datastructures import ResponseCacheControl
from werkzeug.http import parse_cache_control_header

from seerrperf import CacheControl, HeaderParseError
from tests.headers.strategies import FLAGS, KNOWN, SECONDS, SETTINGS, valid_cache_controls

# Why our reading differs from werkzeug's. werkzeug reports the directives as
# written (last duplicate wins, names case-sensitive, int() for numbers); we
# give the meaning a cache must act on.
PRIVATE_WINS = (
    "public with private: we keep private, the more restrictive (RFC 9111 4.2.1); "
    "werkzeug reports both"
)
NO_STORE_WINS = (
    "with no-store nothing may be stored, so freshness and immutable are dropped; "
    "werkzeug keeps them"
)
PRIVATE_NOT_SHARED = (
    "s-maxage only addresses shared caches, which private excludes: dropped; werkzeug keeps it"
)
IMMUTABLE_UNUSED = (
    "immutable without a positive max-age has no freshness to apply to: dropped "
    "(the more restrictive reading); werkzeug keeps it"
)
INVALID_IS_STALE = (
    "an invalid delta-seconds argument makes the response stale (RFC 9111 4.2.1): "
    "we read 0, werkzeug gives None as if absent"
)
INT_IS_NOT_DELTA = (
    "delta-seconds is 1*DIGIT (RFC 9111 1.2.1): werkzeug uses int(), which also takes "
    "'-1', '1_000' and non-ASCII digits; we read the invalid value as 0 (stale)"
)
CLAMPED = "RFC 9111 1.2.2: delta-seconds above 2**31 read as 2147483648; werkzeug keeps the number"
REPEATED_IS_STALE = (
    "the same directive with different values reads as stale (RFC 9111 4.2.1), "
    "werkzeug keeps the last one"
)
SPACE_AROUND_EQUALS = (
    "no space is allowed around '=' (RFC 9111 5.2): the argument is invalid, so stale; "
    "werkzeug strips the spaces"
)
CASE_INSENSITIVE = (
    "directive names are case-insensitive (RFC 9111 5.2); werkzeug matches them "
    "case-sensitively and keeps the upper-case names as unknown directives"
)
NOT_A_DIRECTIVE = (
    "not token[=value]: we ignore the member (or read its leading known name as "
    "invalid); werkzeug keeps the text as an unknown key"
)
UNSAFE_EXTENSION = (
    "an unknown directive whose value holds ',', '\"', '\\' or non-ASCII cannot be "
    "re-emitted safely, so it is ignored (RFC 9111 5.2 lets a cache ignore unknown "
    "directives); werkzeug keeps it"
)
UNTERMINATED = (
    "an unterminated quoted string: werkzeug drops the whole header; we keep the members before it"
)
LOOSENING_WITH_VALUE = (
    "public with an argument is malformed; a directive that only allows more caching "
    "is ignored when malformed, werkzeug counts it"
)


@dataclass(frozen=True)
class Row:
    source: str
    header: str
    ours: str  # str(CacheControl.parse(header)): the canonical form of our reading
    expected_difference: Mapping[str, str] = field(default_factory=dict)  # field -> why
    valid: bool = True  # CacheControl.parse(header, strict=True) accepts it


def row(source: str, header: str, ours: str, *, valid: bool = True, **differences: str) -> Row:
    return Row(source, header, ours, differences, valid)


TABLE = [
    # nginx
    row("nginx `expires 1h`", "max-age=3600", "max-age=3600"),
    row("nginx `expires epoch` / `expires -1`", "no-cache", "no-cache"),
    row("nginx `expires max`", "max-age=315360000", "max-age=315360000"),
    row(
        "nginx add_header for versioned assets",
        "public, max-age=31536000, immutable",
        "public, max-age=31536000, immutable",
    ),
    row(
        "nginx add_header no-cache snippet",
        "no-store, no-cache, must-revalidate, proxy-revalidate, max-age=0",
        "no-cache, no-store, must-revalidate, proxy-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "nginx add_header with a semicolon typo",
        "public; max-age=3600",
        "",
        valid=False,
        extensions=NOT_A_DIRECTIVE,
    ),
    row(
        "nginx plus an app, both setting max-age (two lines joined)",
        "max-age=3600, max-age=60",
        "max-age=0",
        valid=False,
        max_age=REPEATED_IS_STALE,
    ),
    # Apache
    row("Apache mod_expires `access plus 1 month`", "max-age=2592000", "max-age=2592000"),
    # Cloudflare
    row("Cloudflare Browser Cache TTL (default 4 h)", "max-age=14400", "max-age=14400"),
    row(
        "Cloudflare challenge page",
        "private, max-age=0, no-store, no-cache, must-revalidate, post-check=0, pre-check=0",
        "private, no-cache, no-store, must-revalidate, post-check=0, pre-check=0",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "Cloudflare Pages / Netlify / Vercel HTML default",
        "public, max-age=0, must-revalidate",
        "public, max-age=0, must-revalidate",
    ),
    # Fastly
    row(
        "raw.githubusercontent.com (Fastly)",
        "max-age=300",
        "max-age=300",
    ),
    row(
        "files.pythonhosted.org (Fastly)",
        "max-age=365000000, immutable, public",
        "public, max-age=365000000, immutable",
    ),
    row("pypi.org simple index (Fastly)", "max-age=600, public", "public, max-age=600"),
    row(
        "Fastly docs' stale-serving example",
        "max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
        "max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
    ),
    # CloudFront and S3
    row(
        "S3 object uploaded with `--cache-control max-age=31536000,public`",
        "max-age=31536000,public",
        "public, max-age=31536000",
    ),
    row(
        "S3 + CloudFront SPA index.html (deploy guides)",
        "max-age=0, no-cache, no-store, must-revalidate",
        "no-cache, no-store, must-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "CloudFront: edge TTL (s-maxage) longer than the browser's, as AWS documents",
        "max-age=60, s-maxage=86400",
        "max-age=60, s-maxage=86400",
    ),
    # Django
    row(
        "Django never_cache",
        "max-age=0, no-cache, no-store, must-revalidate, private",
        "private, no-cache, no-store, must-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row("Django cache_page(60 * 15)", "max-age=900", "max-age=900"),
    row(
        "Django @cache_control(max_age=3600, public=True)",
        "max-age=3600, public",
        "public, max-age=3600",
    ),
    row("Django @cache_control(private=True)", "private", "private"),
    # Rails
    row(
        "Rails default for dynamic responses",
        "max-age=0, private, must-revalidate",
        "private, max-age=0, must-revalidate",
    ),
    row("Rails expires_in 3.hours, public: true", "max-age=10800, public", "public, max-age=10800"),
    row(
        "Rails expires_in with stale_while_revalidate",
        "max-age=60, public, stale-while-revalidate=60",
        "public, max-age=60, stale-while-revalidate=60",
    ),
    row(
        "Rails http_cache_forever (100 years)",
        "max-age=3155695200, public, immutable",
        "public, max-age=2147483648, immutable",
        max_age=CLAMPED,
    ),
    row(
        "Rails public_file_server (1.year)",
        "public, max-age=31556952",
        "public, max-age=31556952",
    ),
    row("Rails no_store", "no-store", "no-store"),
    # Express
    row("Express static default", "public, max-age=0", "public, max-age=0"),
    row(
        "Express static {maxAge: '1d', immutable: true}",
        "public, max-age=86400, immutable",
        "public, max-age=86400, immutable",
    ),
    row(
        "Express nocache middleware",
        "no-store, no-cache, must-revalidate, proxy-revalidate",
        "no-cache, no-store, must-revalidate, proxy-revalidate",
    ),
    row(
        "Express app computing max-age from undefined",
        "public, max-age=undefined",
        "public, max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
    ),
    row(
        "Express app computing max-age from NaN",
        "max-age=NaN",
        "max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
    ),
    # Next.js
    row(
        "Next.js /_next/static assets",
        "public, max-age=31536000, immutable",
        "public, max-age=31536000, immutable",
    ),
    row(
        "Next.js <= 13 static page (bare stale-while-revalidate)",
        "s-maxage=31536000, stale-while-revalidate",
        "s-maxage=31536000, stale-while-revalidate=0",
        valid=False,
        stale_while_revalidate=INVALID_IS_STALE,
    ),
    row(
        "Next.js 15 ISR page, revalidate 60",
        "s-maxage=60, stale-while-revalidate=31535940",
        "s-maxage=60, stale-while-revalidate=31535940",
    ),
    row(
        "Next.js dynamic page",
        "private, no-cache, no-store, max-age=0, must-revalidate",
        "private, no-cache, no-store, must-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "Next.js image optimizer",
        "public, max-age=60, must-revalidate",
        "public, max-age=60, must-revalidate",
    ),
    # WordPress and PHP
    row(
        "WordPress nocache_headers() before 6.3",
        "no-cache, must-revalidate, max-age=0",
        "no-cache, max-age=0, must-revalidate",
    ),
    row(
        "WordPress nocache_headers() since 6.3",
        "no-cache, must-revalidate, max-age=0, no-store, private",
        "private, no-cache, no-store, must-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "PHP session.cache_limiter=nocache (old PHP)",
        "no-store, no-cache, must-revalidate, post-check=0, pre-check=0",
        "no-cache, no-store, must-revalidate, post-check=0, pre-check=0",
    ),
    row(
        "Laravel / Symfony default",
        "no-cache, private",
        "private, no-cache",
    ),
    row(
        "ASP.NET Core [ResponseCache(NoStore = true)]",
        "no-store,no-cache",
        "no-cache, no-store",
    ),
    row("ASP.NET default", "private", "private"),
    row(
        "Spring Security default",
        "no-cache, no-store, max-age=0, must-revalidate",
        "no-cache, no-store, must-revalidate",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row("Flask send_file default", "no-cache", "no-cache"),
    # Big APIs
    row(
        "GitHub REST API, authenticated",
        "private, max-age=60, s-maxage=60",
        "private, max-age=60",
        valid=False,
        s_maxage=PRIVATE_NOT_SHARED,
    ),
    row(
        "GitHub REST API, anonymous",
        "public, max-age=60, s-maxage=60",
        "public, max-age=60, s-maxage=60",
    ),
    row("google.com", "private, max-age=0", "private, max-age=0"),
    row("fonts.gstatic.com", "public, max-age=31536000", "public, max-age=31536000"),
    # TMDB and the apps around it
    row(
        "TMDB image CDN (image.tmdb.org), as seerrperf.testing.FakeTmdb sends it",
        "public, max-age=31536000",
        "public, max-age=31536000",
    ),
    row(
        "Seerr's image proxy, re-emitting TMDB's max-age",
        "public, max-age=86400",
        "public, max-age=86400",
    ),
    row(
        "LeMedia's per-user responses",
        "private, s-maxage=600",
        "private",
        valid=False,
        s_maxage=PRIVATE_NOT_SHARED,
    ),
    # RFC examples
    row("RFC 9111 5.2.3 extension example", 'private, community="UCI"', "private, community=UCI"),
    row(
        "RFC 9111 5.2.2.4 qualified no-cache",
        'no-cache="Set-Cookie, Set-Cookie2"',
        "no-cache",
    ),
    row(
        "RFC 5861 example",
        "max-age=600, stale-while-revalidate=30",
        "max-age=600, stale-while-revalidate=30",
    ),
    row("RFC 8246 example", "max-age=31536000, immutable", "max-age=31536000, immutable"),
    row(
        "RFC 9111 5.2.2.3 must-understand example",
        "must-understand, no-store",
        "no-store, must-understand",
    ),
    # Malformed or conflicting, as seen in the wild (issue 15's list included)
    row(
        "middleware layering",
        "public, private",
        "private",
        valid=False,
        public=PRIVATE_WINS,
    ),
    row(
        "hand-written config",
        "public, immutable",
        "public",
        valid=False,
        immutable=IMMUTABLE_UNUSED,
    ),
    row(
        "no-store with freshness",
        "no-store, max-age=60",
        "no-store",
        valid=False,
        max_age=NO_STORE_WINS,
    ),
    row(
        "space before '='",
        "max-age =3600",
        "max-age=0",
        valid=False,
        max_age=SPACE_AROUND_EQUALS,
    ),
    row(
        "colon instead of '='",
        "max-age: 3600",
        "max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
        extensions=NOT_A_DIRECTIVE,
    ),
    row("quoted number", 'max-age="3600"', "max-age=3600"),
    row(
        "upper-case names",
        "Max-Age=3600, PUBLIC",
        "public, max-age=3600",
        max_age=CASE_INSENSITIVE,
        public=CASE_INSENSITIVE,
        extensions=CASE_INSENSITIVE,
    ),
    row(
        "negative max-age (expiry in the past)",
        "max-age=-1",
        "max-age=0",
        valid=False,
        max_age=INT_IS_NOT_DELTA,
    ),
    row(
        "float formatting bug",
        "public, max-age=86400.0",
        "public, max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
    ),
    row(
        "empty max-age from a template",
        "max-age=",
        "max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
    ),
    row(
        "double comma",
        "public, max-age=60,,s-maxage=120",
        "public, max-age=60, s-maxage=120",
    ),
    row(
        "huge max-age",
        "max-age=99999999999",
        "max-age=2147483648",
        max_age=CLAMPED,
    ),
    row(
        "extension whose quoted value holds a comma",
        'ext="a, b", max-age=60',
        "max-age=60",
        valid=False,
        extensions=UNSAFE_EXTENSION,
    ),
    row(
        "extension whose quoted value holds an escaped quote",
        'ext="a\\"b", max-age=60',
        "max-age=60",
        valid=False,
        extensions=UNSAFE_EXTENSION,
    ),
    row(
        "unterminated quoted string",
        'max-age=60, ext="unterminated',
        "max-age=60",
        valid=False,
        max_age=UNTERMINATED,
    ),
    row(
        "header injection attempt",
        "max-age=60\r\nSet-Cookie: a=1",
        "max-age=0",
        valid=False,
        max_age=INVALID_IS_STALE,
    ),
    row(
        "public with an argument",
        "public=1, max-age=60",
        "max-age=60",
        valid=False,
        public=LOOSENING_WITH_VALUE,
    ),
    row("empty header", "", ""),
]


def our_view(cc: CacheControl) -> dict[str, object]:
    view: dict[str, object] = {name: getattr(cc, name) for name in FLAGS + SECONDS}
    view["extensions"] = dict(cc.extensions)
    return view


def werkzeug_view(header: str) -> dict[str, object]:
    theirs = parse_cache_control_header(header, cls=ResponseCacheControl)
    view: dict[str, object] = {name: getattr(theirs, name) for name in FLAGS + SECONDS}
    # Qualified forms: werkzeug gives the field names as a str, we read the flag.
    view["private"] = theirs.private is not None
    view["no_cache"] = theirs.no_cache is not None
    view["extensions"] = {k: v for k, v in theirs.items() if k not in KNOWN}
    return view


def test_the_table_is_big_enough_and_explains_every_difference() -> None:
    # Some senders send the same value (nginx and Next.js for assets): count inputs.
    assert len({r.header for r in TABLE}) >= 50
    for r in TABLE:
        assert set(r.expected_difference) <= set(FLAGS + SECONDS + ("extensions",))
        assert all(reason.strip() for reason in r.expected_difference.values())


@pytest.mark.parametrize("r", TABLE, ids=[r.source for r in TABLE])
def test_real_world_header_against_werkzeug(r: Row) -> None:
    ours = CacheControl.parse(r.header)
    assert str(ours) == r.ours
    ours_view, theirs_view = our_view(ours), werkzeug_view(r.header)
    differing = {name for name in ours_view if ours_view[name] != theirs_view[name]}
    assert differing == set(r.expected_difference), (ours_view, theirs_view)


@pytest.mark.parametrize("r", TABLE, ids=[r.source for r in TABLE])
def test_real_world_header_strictly(r: Row) -> None:
    if r.valid:
        assert CacheControl.parse(r.header, strict=True) == CacheControl.parse(r.header)
    else:
        with pytest.raises(HeaderParseError):
            CacheControl.parse(r.header, strict=True)


@SETTINGS
@given(valid_cache_controls())
def test_werkzeug_reads_every_header_we_build_identically(cc: CacheControl) -> None:
    assert werkzeug_view(str(cc)) == our_view(cc)
