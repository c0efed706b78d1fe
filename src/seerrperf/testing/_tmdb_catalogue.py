"""FakeTmdb's catalogue: deterministic TMDB v3 JSON, a pure function of the request.

Every value is drawn from a keyed BLAKE2b hash of (kind, id, field), so the
same id gives the same title, dates, poster path and genres in every process,
Python version and run, independently of :class:`FakeTmdb`'s RNG seed. A few
well-known ids carry their real titles. Every id from 1 to ``max_id`` exists
for every kind; cross references (credits, collection parts, search results)
point at ids that exist but are not guaranteed to point back.

No I/O here: :class:`FakeTmdb` adds transport, auth and failure knobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

__all__ = ["MAX_ID_LIMIT", "NOT_FOUND", "Catalogue", "Json", "error_body", "image_bytes"]

Json = dict[str, Any]
_T = TypeVar("_T")

_PAGE_SIZE = 20
_MAX_PAGE = 500
# Generated external ids are 8-digit numbers starting with 8 or 9, clear of
# real IMDb/TVDB ids; that needs ids below ten million.
MAX_ID_LIMIT = 9_999_999
_SALT = b"seerrperf-fake-tmdb-v1"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FIRST_DAY = dt.date(1960, 1, 1)
_LAST_DAY = dt.date(2024, 12, 31)


def error_body(status_code: int, message: str) -> Json:
    """TMDB's error envelope."""
    return {"success": False, "status_code": status_code, "status_message": message}


NOT_FOUND = error_body(34, "The resource you requested could not be found.")
_BAD_PAGE = error_body(
    22, "Invalid page: Pages start at 1 and max at 500. They are expected to be an integer."
)
_BAD_PARAMETERS = error_body(5, "Invalid parameters: Your request parameters are incorrect.")


class _Draw:
    """Deterministic draws for one entity: each field hashes independently."""

    __slots__ = ("_key",)

    def __init__(self, *parts: object) -> None:
        self._key = ":".join(map(str, parts)).encode()

    def _digest(self, field: str, size: int = 8) -> bytes:
        data = self._key + b"|" + field.encode()
        return hashlib.blake2b(data, digest_size=size, key=_SALT).digest()

    def number(self, field: str, low: int, high: int) -> int:
        """An int in ``[low, high]``."""
        return low + int.from_bytes(self._digest(field)) % (high - low + 1)

    def decimal(self, field: str, low: float, high: float) -> float:
        fraction = int.from_bytes(self._digest(field)) / 2**64
        return round(low + (high - low) * fraction, 3)

    def chance(self, field: str, probability: float) -> bool:
        return int.from_bytes(self._digest(field)) / 2**64 < probability

    def pick(self, field: str, options: Sequence[_T]) -> _T:
        return options[self.number(field, 0, len(options) - 1)]

    def sample(self, field: str, options: Sequence[_T], count: int) -> list[_T]:
        ranked = sorted(range(len(options)), key=lambda i: self._digest(f"{field}{i}"))
        return [options[i] for i in sorted(ranked[:count])]

    def day(self, field: str, start: dt.date = _FIRST_DAY, end: dt.date = _LAST_DAY) -> dt.date:
        return start + dt.timedelta(days=self.number(field, 0, (end - start).days))

    def token(self, field: str, length: int = 27) -> str:
        value = int.from_bytes(self._digest(field, 32))
        chars = []
        for _ in range(length):
            value, digit = divmod(value, 62)
            chars.append(_BASE62[digit])
        return "".join(chars)

    def image(self, field: str, ext: str = "jpg") -> str:
        return f"/{self.token(field)}.{ext}"

    def hex_id(self, field: str) -> str:
        return self._digest(field, 12).hex()


# ---------------------------------------------------------------- static data

_MOVIE_GENRES = (
    (28, "Action"), (12, "Adventure"), (16, "Animation"), (35, "Comedy"), (80, "Crime"),
    (99, "Documentary"), (18, "Drama"), (10751, "Family"), (14, "Fantasy"), (36, "History"),
    (27, "Horror"), (10402, "Music"), (9648, "Mystery"), (10749, "Romance"),
    (878, "Science Fiction"), (10770, "TV Movie"), (53, "Thriller"), (10752, "War"),
    (37, "Western"),
)  # fmt: skip
_TV_GENRES = (
    (10759, "Action & Adventure"), (16, "Animation"), (35, "Comedy"), (80, "Crime"),
    (99, "Documentary"), (18, "Drama"), (10751, "Family"), (10762, "Kids"), (9648, "Mystery"),
    (10763, "News"), (10764, "Reality"), (10765, "Sci-Fi & Fantasy"), (10766, "Soap"),
    (10767, "Talk"), (10768, "War & Politics"), (37, "Western"),
)  # fmt: skip
_GENRE_NAMES = dict(_MOVIE_GENRES + _TV_GENRES)
_GENRES_BY_KIND = {"movie": _MOVIE_GENRES, "tv": _TV_GENRES}
_COUNTRIES = (
    ("US", "United States of America", "United States"), ("GB", "United Kingdom", "United Kingdom"),
    ("CA", "Canada", "Canada"), ("AU", "Australia", "Australia"), ("DE", "Germany", "Deutschland"),
    ("FR", "France", "France"), ("ES", "Spain", "España"), ("IT", "Italy", "Italia"),
    ("JP", "Japan", "日本"), ("KR", "South Korea", "대한민국"), ("BR", "Brazil", "Brasil"),
    ("MX", "Mexico", "México"), ("IN", "India", "India"), ("NL", "Netherlands", "Nederland"),
    ("SE", "Sweden", "Sverige"), ("NO", "Norway", "Norge"), ("DK", "Denmark", "Danmark"),
    ("FI", "Finland", "Suomi"), ("PL", "Poland", "Polska"), ("NZ", "New Zealand", "New Zealand"),
)  # fmt: skip
_PRODUCTION_COUNTRIES = ("US", "US", "US", "GB", "FR", "DE", "JP", "CA")
_COUNTRY_NAMES = {code: english for code, english, _ in _COUNTRIES}
_LANGUAGES = (
    ("en", "English", "English"), ("fr", "French", "Français"), ("de", "German", "Deutsch"),
    ("es", "Spanish", "Español"), ("it", "Italian", "Italiano"), ("ja", "Japanese", "日本語"),
    ("ko", "Korean", "한국어/조선말"), ("pt", "Portuguese", "Português"),
    ("zh", "Mandarin", "普通话"), ("hi", "Hindi", "हिन्दी"), ("sv", "Swedish", "svenska"),
    ("nl", "Dutch", "Nederlands"), ("da", "Danish", "Dansk"), ("no", "Norwegian", "Norsk"),
    ("fi", "Finnish", "suomi"), ("pl", "Polish", "Polski"), ("th", "Thai", "ภาษาไทย"),
    ("tr", "Turkish", "Türkçe"), ("cn", "Cantonese", "广州话 / 廣州話"),
    ("xx", "No Language", "No Language"),
)  # fmt: skip
_LANGUAGE_NAMES = {code: (english, native) for code, english, native in _LANGUAGES}
# Mostly English, like TMDB's popular titles.
_ORIGINAL_LANGUAGES = ("en", "en", "en", "en", "en", "fr", "de", "es", "ja", "ko", "it", "hi")
_COMPANIES = (
    (174, "Warner Bros. Pictures", "US"), (33, "Universal Pictures", "US"),
    (4, "Paramount Pictures", "US"), (5, "Columbia Pictures", "US"),
    (25, "20th Century Fox", "US"), (923, "Legendary Pictures", "US"),
    (79, "Village Roadshow Pictures", "US"), (2, "Walt Disney Pictures", "US"),
    (7, "DreamWorks Pictures", "US"), (41077, "A24", "US"), (6194, "Lucasfilm Ltd.", "US"),
    (104, "Canal+", "FR"), (10342, "Studio Ghibli", "JP"), (4171, "Warner Bros. UK", "GB"),
)  # fmt: skip
_NETWORKS = (
    (49, "HBO", "US"), (213, "Netflix", ""), (174, "AMC", "US"), (4, "BBC One", "GB"),
    (2739, "Disney+", ""), (1024, "Prime Video", ""), (2552, "Apple TV+", ""), (6, "NBC", "US"),
    (16, "CBS", "US"), (19, "FOX", "US"), (67, "Showtime", "US"), (88, "FX", "US"),
)  # fmt: skip
_NETWORK_BY_ID = {network[0]: network for network in _NETWORKS}
_PROVIDERS = (
    (8, "Netflix"), (9, "Amazon Prime Video"), (337, "Disney Plus"), (15, "Hulu"),
    (350, "Apple TV Plus"), (1899, "Max"), (531, "Paramount Plus"), (386, "Peacock"),
    (2, "Apple TV"), (3, "Google Play Movies"), (10, "Amazon Video"), (283, "Crunchyroll"),
)  # fmt: skip
_CERTIFICATIONS = {
    "movie": {
        "US": ("NR", "G", "PG", "PG-13", "R", "NC-17"),
        "GB": ("U", "PG", "12A", "12", "15", "18", "R18"),
        "DE": ("0", "6", "12", "16", "18"),
        "FR": ("U", "12", "16", "18"),
    },
    "tv": {
        "US": ("NR", "TV-Y", "TV-Y7", "TV-G", "TV-PG", "TV-14", "TV-MA"),
        "GB": ("U", "PG", "12", "15", "18"),
        "DE": ("0", "6", "12", "16", "18"),
        "FR": ("NR", "10", "12", "16", "18"),
    },
}
_ADJECTIVES = (
    "Silent", "Crimson", "Hidden", "Broken", "Golden", "Last", "Distant", "Frozen", "Electric",
    "Midnight", "Hollow", "Burning", "Velvet", "Iron", "Restless", "Forgotten", "Savage",
    "Quiet", "Endless", "Wandering", "Secret", "Northern", "Paper", "Glass",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Protocol", "Kingdom", "Signal", "Garden", "Frontier", "Empire", "Horizon",
    "Witness", "Orchard", "Voyage", "Cipher", "Tide", "Lantern", "Station", "Canyon", "Verdict",
    "Mirror", "Citadel", "River", "Orbit", "Archive", "Crown", "Summer",
)  # fmt: skip
_FIRST_NAMES = (
    "Ava", "Liam", "Maya", "Noah", "Iris", "Owen", "Lena", "Caleb", "Nora", "Felix", "Ruth",
    "Hugo", "Clara", "Elias", "June", "Marcus", "Ines", "Tobias", "Vera", "Jonah", "Alma",
    "Theo", "Greta", "Silas",
)  # fmt: skip
_LAST_NAMES = (
    "Hartley", "Okafor", "Lindqvist", "Moreau", "Castillo", "Nakamura", "Brennan", "Kowalski",
    "Adeyemi", "Fischer", "Delgado", "Whitaker", "Rossi", "Haddad", "Sorensen", "Valdez",
    "Ashford", "Quinn", "Mercer", "Ibarra", "Thorne", "Calloway", "Petrov", "Lowell",
)  # fmt: skip
_ROLES = ("detective", "pilot", "teacher", "smuggler", "scientist", "runaway", "ex-soldier")
_GOALS = (
    "uncover a conspiracy", "find a way home", "protect a stranger", "win back a family",
    "survive one more night", "solve an impossible crime", "outrun the past",
)  # fmt: skip
_KEYWORDS = (
    "dystopia", "time travel", "artificial intelligence", "based on novel or book", "heist",
    "coming of age", "small town", "revenge", "friendship", "space", "dragon", "murder",
    "family relationships", "road trip", "superhero", "post-apocalyptic future", "magic",
)  # fmt: skip
_DEPARTMENTS = (("Directing", "Director"), ("Writing", "Screenplay"), ("Production", "Producer"))
_CHANGE_KEYS = (
    "adult", "also_known_as", "biography", "birthday", "cast", "crew", "genres", "images",
    "overview", "poster_path", "release_dates", "runtime", "season", "title", "videos",
)  # fmt: skip
_IMAGE_SIZES = {
    "backdrop_sizes": ("w300", "w780", "w1280", "original"),
    "logo_sizes": ("w45", "w92", "w154", "w185", "w300", "w500", "original"),
    "poster_sizes": ("w92", "w154", "w185", "w342", "w500", "w780", "original"),
    "profile_sizes": ("w45", "w185", "h632", "original"),
    "still_sizes": ("w92", "w185", "w300", "original"),
}
_ALL_SIZES = frozenset(size for sizes in _IMAGE_SIZES.values() for size in sizes)

# ---------------------------------------------------------------- real entries

_KNOWN_MOVIES: dict[int, Json] = {
    603: {
        "title": "The Matrix",
        "release_date": "1999-03-31",
        "runtime": 136,
        "genres": [28, 878],
        "tagline": "Welcome to the Real World.",
        "overview": (
            "Set in the 22nd century, The Matrix tells the story of a computer hacker who "
            "joins a group of underground insurgents fighting the vast and powerful computers "
            "who now rule the earth."
        ),
        "poster_path": "/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg",
        "budget": 63000000,
        "revenue": 463517383,
        "vote_average": 8.2,
        "collection": 2344,
        "cast": [(6384, "Thomas A. Anderson / Neo"), (2975, "Morpheus"), (530, "Trinity")],
        "crew": [(9340, 0), (9339, 0)],
    },
    604: {"title": "The Matrix Reloaded", "release_date": "2003-05-15", "collection": 2344},
    605: {"title": "The Matrix Revolutions", "release_date": "2003-11-05", "collection": 2344},
    624860: {
        "title": "The Matrix Resurrections",
        "release_date": "2021-12-16",
        "collection": 2344,
    },
}
_KNOWN_TV: dict[int, Json] = {
    1399: {
        "name": "Game of Thrones",
        "first_air_date": "2011-04-17",
        "seasons": [10, 10, 10, 10, 10, 10, 7, 6],
        "ended": True,
        "genres": [10765, 18, 10759],
        "network": 49,
        "vote_average": 8.456,
        "overview": (
            "Seven noble families fight for control of the mythical land of Westeros. "
            "Friction between the houses leads to full-scale war. All while a very ancient "
            "evil awakens in the farthest north. Amidst the war, a neglected military order "
            "of misfits, the Night's Watch, is all that stands between the realms of men and "
            "icy horrors beyond."
        ),
        "poster_path": "/1XS1oqL89opfnbLl8WnZY1O1uJx.jpg",
        "cast": [
            (1223786, "Daenerys Targaryen"),
            (239019, "Jon Snow"),
            (22970, "Tyrion Lannister"),
        ],
        "crew": [(9813, 1), (228068, 1)],
    },
}
_KNOWN_PEOPLE: dict[int, tuple[str, int, str]] = {
    6384: ("Keanu Reeves", 2, "Acting"),
    2975: ("Laurence Fishburne", 2, "Acting"),
    530: ("Carrie-Anne Moss", 1, "Acting"),
    9340: ("Lana Wachowski", 1, "Directing"),
    9339: ("Lilly Wachowski", 1, "Directing"),
    1223786: ("Emilia Clarke", 1, "Acting"),
    239019: ("Kit Harington", 2, "Acting"),
    22970: ("Peter Dinklage", 2, "Acting"),
    9813: ("David Benioff", 2, "Writing"),
    228068: ("D. B. Weiss", 2, "Writing"),
}
_KNOWN_COLLECTIONS: dict[int, list[int]] = {2344: [603, 604, 605, 624860]}
_KNOWN_EXTERNAL: dict[tuple[str, int], dict[str, Any]] = {
    ("movie", 603): {"imdb_id": "tt0133093"},
    ("tv", 1399): {"imdb_id": "tt0944947", "tvdb_id": 121361},
    ("person", 6384): {"imdb_id": "nm0000206"},
}
_KNOWN_EXTERNAL_INDEX = {
    (source, str(value)): key
    for key, ids in _KNOWN_EXTERNAL.items()
    for source, value in ids.items()
}
# Generated external ids: (source, pattern) -> kind; the digits are the TMDB id.
_EXTERNAL_PATTERNS = (
    ("imdb_id", re.compile(r"tt8(\d{7})"), "movie"),
    ("imdb_id", re.compile(r"tt9(\d{7})"), "tv"),
    ("imdb_id", re.compile(r"nm8(\d{7})"), "person"),
    ("tvdb_id", re.compile(r"8(\d{7})"), "tv"),
)
_EXTERNAL_SOURCES = frozenset(
    {
        "imdb_id", "tvdb_id", "facebook_id", "instagram_id", "tiktok_id", "twitter_id",
        "wikidata_id", "youtube_id",
    }
)  # fmt: skip


def _external_ids(kind: str, id_: int) -> dict[str, Any]:
    generated: dict[str, dict[str, Any]] = {
        "movie": {"imdb_id": f"tt{80_000_000 + id_}"},
        "tv": {"imdb_id": f"tt{90_000_000 + id_}", "tvdb_id": 80_000_000 + id_},
        "person": {"imdb_id": f"nm{80_000_000 + id_}"},
    }
    return {**generated[kind], **_KNOWN_EXTERNAL.get((kind, id_), {})}


# ---------------------------------------------------------------- names and titles


def _generated_title(draw: _Draw) -> str:
    adjective, noun = draw.pick("adjective", _ADJECTIVES), draw.pick("noun", _NOUNS)
    pattern = draw.number("pattern", 0, 2)
    if pattern == 0:
        return f"The {adjective} {noun}"
    if pattern == 1:
        return f"{adjective} {noun}"
    return f"{noun} of the {adjective} {draw.pick('noun2', _NOUNS)}"


def _movie_title(movie_id: int) -> str:
    known = _KNOWN_MOVIES.get(movie_id, {})
    return str(known.get("title") or _generated_title(_Draw("movie", movie_id)))


def _tv_name(tv_id: int) -> str:
    known = _KNOWN_TV.get(tv_id, {})
    return str(known.get("name") or _generated_title(_Draw("tv", tv_id)))


def _person_basics(person_id: int) -> Json:
    draw = _Draw("person", person_id)
    name, gender, department = _KNOWN_PEOPLE.get(
        person_id,
        (
            f"{draw.pick('first', _FIRST_NAMES)} {draw.pick('last', _LAST_NAMES)}",
            draw.pick("gender", (1, 2, 2, 0)),
            draw.pick("department", ("Acting", "Acting", "Acting", "Directing", "Writing")),
        ),
    )
    return {
        "adult": False,
        "gender": gender,
        "id": person_id,
        "known_for_department": department,
        "name": name,
        "original_name": name,
        "popularity": draw.decimal("popularity", 0.5, 80.0),
        "profile_path": draw.image("profile"),
    }


def _overview(draw: _Draw, title: str) -> str:
    hero = f"{draw.pick('hero-first', _FIRST_NAMES)} {draw.pick('hero-last', _LAST_NAMES)}"
    role, goal = draw.pick("role", _ROLES), draw.pick("goal", _GOALS)
    return f"In {title}, {hero}, a {role}, must {goal} before it is too late."


def _genres(ids: Sequence[int]) -> list[Json]:
    return [{"id": genre_id, "name": _GENRE_NAMES[genre_id]} for genre_id in ids]


def _language(code: str) -> Json:
    english, native = _LANGUAGE_NAMES[code]
    return {"english_name": english, "iso_639_1": code, "name": native}


def _companies(draw: _Draw) -> list[Json]:
    return [
        {
            "id": company_id,
            "logo_path": _Draw("company", company_id).image("logo", "png"),
            "name": name,
            "origin_country": country,
        }
        for company_id, name, country in draw.sample("companies", _COMPANIES, 2)
    ]


def _credit(draw: _Draw, person_id: int, field: str) -> Json:
    return {**_person_basics(person_id), "credit_id": draw.hex_id(field)}


def _image_list(
    draw: _Draw, field: str, count: int, first: str, shape: tuple[int, int]
) -> list[Json]:
    width, height = shape
    ext = "png" if field == "logo" else "jpg"
    return [
        {
            "aspect_ratio": round(width / height, 3),
            "height": height,
            "iso_639_1": "en" if field != "backdrop" else None,
            "file_path": first if index == 0 else draw.image(f"{field}{index}", ext),
            "vote_average": draw.decimal(f"{field}-vote{index}", 0.0, 10.0),
            "vote_count": draw.number(f"{field}-votes{index}", 0, 50),
            "width": width,
        }
        for index in range(count)
    ]


def _paged(results: list[Json], page: int, total_results: int) -> Json:
    return {
        "page": page,
        "results": results,
        "total_pages": max(1, -(-total_results // _PAGE_SIZE)),
        "total_results": total_results,
    }


class _BadRequest(Exception):
    """Ends a handler with a TMDB error response."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class _Call(NamedTuple):
    """What a route handler gets: the path's parameters and the query."""

    params: dict[str, str]
    query: Mapping[str, str]
    images_base_url: str

    @property
    def id(self) -> int:
        return int(self.params["id"])


_Route = tuple[re.Pattern[str], Callable[["Catalogue", _Call], Json | list[Json]]]


class Catalogue:
    """Answers TMDB v3 API paths (without the ``/3`` prefix) with JSON.

    Args:
        max_id: Highest id that exists; larger ids are 404 for every kind.
        deleted_ids: Ids that are 404 for every kind.
    """

    def __init__(self, max_id: int, deleted_ids: frozenset[int]) -> None:
        self.max_id = max_id
        self.deleted_ids = deleted_ids

    def respond(
        self, path: str, query: Mapping[str, str], images_base_url: str
    ) -> tuple[int, Json | list[Json]]:
        """Return ``(status, JSON body)`` for one GET of ``path``."""
        for pattern, handler in _ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            call = _Call(match.groupdict(), query, images_base_url)
            if "id" in call.params and not self.exists(call.id):
                return 404, NOT_FOUND
            try:
                return 200, handler(self, call)
            except _BadRequest as exc:
                return exc.status, exc.body
        return 404, NOT_FOUND

    def exists(self, id_: int) -> bool:
        """Whether ``id_`` is in range and not deleted."""
        return 1 <= id_ <= self.max_id and id_ not in self.deleted_ids

    def _ref(self, draw: _Draw, field: str) -> int:
        """An id to refer to from another entity."""
        return draw.number(field, 1, self.max_id)

    # ------------------------------------------------------------ movies

    def movie(self, movie_id: int, append: Sequence[str] = ()) -> Json:
        """``/movie/{id}`` with the supported ``append_to_response`` parts."""
        draw = _Draw("movie", movie_id)
        known = _KNOWN_MOVIES.get(movie_id, {})
        title = _movie_title(movie_id)
        language = "en" if known else draw.pick("language", _ORIGINAL_LANGUAGES)
        genre_ids = known.get("genres") or [
            g for g, _ in draw.sample("genres", _MOVIE_GENRES, draw.number("genre-count", 1, 3))
        ]
        country = "US" if known else draw.pick("country", _PRODUCTION_COUNTRIES)
        collection_id = known.get("collection") or (
            self._ref(draw, "collection") if draw.chance("in-collection", 0.15) else None
        )
        poster = known.get("poster_path") or draw.image("poster")
        backdrop = draw.image("backdrop")
        record: Json = {
            "adult": False,
            "backdrop_path": backdrop,
            "belongs_to_collection": (
                None if collection_id is None else self._collection_summary(collection_id)
            ),
            "budget": known.get("budget", draw.number("budget", 0, 200) * 1_000_000),
            "genres": _genres(genre_ids),
            "homepage": "",
            "id": movie_id,
            "imdb_id": _external_ids("movie", movie_id)["imdb_id"],
            "origin_country": [country],
            "original_language": language,
            "original_title": title,
            "overview": known.get("overview") or _overview(draw, title),
            "popularity": draw.decimal("popularity", 1.0, 250.0),
            "poster_path": poster,
            "production_companies": _companies(draw),
            "production_countries": [{"iso_3166_1": country, "name": _COUNTRY_NAMES[country]}],
            "release_date": known.get("release_date") or draw.day("release").isoformat(),
            "revenue": known.get("revenue", draw.number("revenue", 0, 900) * 1_000_000),
            "runtime": known.get("runtime", draw.number("runtime", 78, 178)),
            "spoken_languages": [_language(language)],
            "status": "Released",
            "tagline": known.get("tagline", ""),
            "title": title,
            "video": False,
            "vote_average": known.get("vote_average", draw.decimal("vote", 4.0, 8.9)),
            "vote_count": draw.number("votes", 10, 30_000),
        }
        if "credits" in append:
            record["credits"] = self._credits(draw, known, cast_id=True)
        if "external_ids" in append:
            record["external_ids"] = {
                **_external_ids("movie", movie_id),
                "wikidata_id": None,
                "facebook_id": None,
                "instagram_id": None,
                "twitter_id": None,
            }
        if "images" in append:
            record["images"] = self._images(draw, poster, backdrop)
        return record

    def movie_item(self, movie_id: int, media_type: bool = False) -> Json:
        """A movie as it appears in lists (search, discover, trending)."""
        full = self.movie(movie_id)
        item = {key: full[key] for key in _MOVIE_ITEM_KEYS}
        item["genre_ids"] = [genre["id"] for genre in full["genres"]]
        if media_type:
            item["media_type"] = "movie"
        return item

    def _credits(self, draw: _Draw, known: Json, *, cast_id: bool) -> Json:
        cast_refs = known.get("cast") or [
            (self._ref(draw, f"cast{i}"), self._character(draw, i)) for i in range(5)
        ]
        crew_refs = known.get("crew") or [
            (self._ref(draw, f"crew{i}"), i) for i in range(len(_DEPARTMENTS))
        ]
        cast = []
        for order, (person_id, character) in enumerate(cast_refs):
            entry = _credit(draw, person_id, f"cast{order}")
            if cast_id:
                entry["cast_id"] = order + 1
            cast.append({**entry, "character": character, "order": order})
        crew = []
        for index, (person_id, job) in enumerate(crew_refs):
            department, title = _DEPARTMENTS[job]
            entry = _credit(draw, person_id, f"crew{index}")
            crew.append({**entry, "department": department, "job": title})
        return {"cast": cast, "crew": crew}

    @staticmethod
    def _character(draw: _Draw, index: int) -> str:
        first = draw.pick(f"character{index}", _FIRST_NAMES)
        return f"{first} {draw.pick(f'surname{index}', _LAST_NAMES)}"

    @staticmethod
    def _images(draw: _Draw, poster: str, backdrop: str) -> Json:
        return {
            "backdrops": _image_list(draw, "backdrop", 2, backdrop, (3840, 2160)),
            "logos": _image_list(draw, "logo", 1, draw.image("logo0", "png"), (1200, 400)),
            "posters": _image_list(draw, "poster", 3, poster, (2000, 3000)),
        }

    def _collection_parts(self, collection_id: int) -> list[int]:
        known = _KNOWN_COLLECTIONS.get(collection_id)
        if known is not None:
            return known
        draw = _Draw("collection", collection_id)
        return [self._ref(draw, f"part{i}") for i in range(draw.number("parts", 2, 4))]

    def _collection_summary(self, collection_id: int) -> Json:
        draw = _Draw("collection", collection_id)
        return {
            "id": collection_id,
            "name": f"{_movie_title(self._collection_parts(collection_id)[0])} Collection",
            "poster_path": draw.image("poster"),
            "backdrop_path": draw.image("backdrop"),
        }

    def collection(self, collection_id: int) -> Json:
        """``/collection/{id}``."""
        summary = self._collection_summary(collection_id)
        return {
            **summary,
            "overview": f"The films of {summary['name'].removesuffix(' Collection')}.",
            "parts": [
                self.movie_item(part, media_type=True)
                for part in self._collection_parts(collection_id)
            ],
        }

    # ------------------------------------------------------------ tv

    def _seasons(self, tv_id: int) -> tuple[dt.date, list[int]]:
        """First air date and episode count per season (1..N)."""
        draw = _Draw("tv", tv_id)
        known = _KNOWN_TV.get(tv_id)
        if known is not None:
            return dt.date.fromisoformat(known["first_air_date"]), known["seasons"]
        # Early enough that even eight seasons have aired.
        first = draw.day("first-air", dt.date(1990, 1, 1), dt.date(2015, 12, 31))
        counts = [draw.number(f"episodes{s}", 6, 22) for s in range(draw.number("seasons", 1, 8))]
        return first, counts

    @staticmethod
    def _episode_day(first: dt.date, season: int, episode: int) -> dt.date:
        return first + dt.timedelta(days=365 * (season - 1) + 7 * (episode - 1))

    def tv(self, tv_id: int, append: Sequence[str] = ()) -> Json:
        """``/tv/{id}`` with the supported ``append_to_response`` parts."""
        draw = _Draw("tv", tv_id)
        known = _KNOWN_TV.get(tv_id, {})
        name = _tv_name(tv_id)
        first, counts = self._seasons(tv_id)
        language = "en" if known else draw.pick("language", _ORIGINAL_LANGUAGES)
        genre_ids = known.get("genres") or [
            g for g, _ in draw.sample("genres", _TV_GENRES, draw.number("genre-count", 1, 3))
        ]
        ended = known.get("ended", draw.chance("ended", 0.5))
        network_id, network_name, network_country = (
            _NETWORK_BY_ID[known["network"]]
            if "network" in known
            else draw.pick("network", _NETWORKS)
        )
        country = network_country or "US"
        poster = known.get("poster_path") or draw.image("poster")
        backdrop = draw.image("backdrop")
        last_season = len(counts)
        last_episode = self.episode(tv_id, last_season, counts[-1], first, counts[-1])
        creators = [
            {k: v for k, v in _credit(draw, pid, f"creator{i}").items() if k in _CREATOR_KEYS}
            for i, (pid, _) in enumerate(known.get("crew") or [(self._ref(draw, "creator"), 1)])
        ]
        record: Json = {
            "adult": False,
            "backdrop_path": backdrop,
            "created_by": creators,
            "episode_run_time": [draw.pick("runtime", (22, 30, 45, 50, 60))],
            "first_air_date": first.isoformat(),
            "genres": _genres(genre_ids),
            "homepage": "",
            "id": tv_id,
            "in_production": not ended,
            "languages": [language],
            "last_air_date": last_episode["air_date"],
            "last_episode_to_air": last_episode,
            "name": name,
            "next_episode_to_air": None,
            "networks": [
                {
                    "id": network_id,
                    "logo_path": _Draw("network", network_id).image("logo", "png"),
                    "name": network_name,
                    "origin_country": network_country,
                }
            ],
            "number_of_episodes": sum(counts),
            "number_of_seasons": len(counts),
            "origin_country": [country],
            "original_language": language,
            "original_name": name,
            "overview": known.get("overview") or _overview(draw, name),
            "popularity": draw.decimal("popularity", 1.0, 400.0),
            "poster_path": poster,
            "production_companies": _companies(draw),
            "production_countries": [{"iso_3166_1": country, "name": _COUNTRY_NAMES[country]}],
            "seasons": [
                self._season_summary(tv_id, season, first, count)
                for season, count in enumerate(counts, start=1)
            ],
            "spoken_languages": [_language(language)],
            "status": "Ended" if ended else "Returning Series",
            "tagline": "",
            "type": "Scripted",
            "vote_average": known.get("vote_average", draw.decimal("vote", 4.0, 9.2)),
            "vote_count": draw.number("votes", 10, 25_000),
        }
        if "credits" in append:
            record["credits"] = self._credits(draw, known, cast_id=False)
        if "external_ids" in append:
            record["external_ids"] = {
                **_external_ids("tv", tv_id),
                "freebase_mid": None,
                "freebase_id": None,
                "tvrage_id": None,
                "wikidata_id": None,
                "facebook_id": None,
                "instagram_id": None,
                "twitter_id": None,
            }
        if "images" in append:
            record["images"] = self._images(draw, poster, backdrop)
        return record

    def tv_item(self, tv_id: int, media_type: bool = False) -> Json:
        """A TV show as it appears in lists (search, discover, trending)."""
        full = self.tv(tv_id)
        item = {key: full[key] for key in _TV_ITEM_KEYS}
        item["genre_ids"] = [genre["id"] for genre in full["genres"]]
        if media_type:
            item["media_type"] = "tv"
        return item

    def _season_summary(self, tv_id: int, season: int, first: dt.date, count: int) -> Json:
        draw = _Draw("season", tv_id, season)
        return {
            "air_date": self._episode_day(first, season, 1).isoformat(),
            "episode_count": count,
            "id": draw.number("id", 1, MAX_ID_LIMIT),
            "name": f"Season {season}",
            "overview": "",
            "poster_path": draw.image("poster"),
            "season_number": season,
            "vote_average": draw.decimal("vote", 5.0, 9.0),
        }

    def episode(self, tv_id: int, season: int, episode: int, first: dt.date, count: int) -> Json:
        """One episode of ``season`` (which has ``count`` episodes)."""
        draw = _Draw("episode", tv_id, season, episode)
        return {
            "air_date": self._episode_day(first, season, episode).isoformat(),
            "episode_number": episode,
            "episode_type": "finale" if episode == count else "standard",
            "id": draw.number("id", 1, MAX_ID_LIMIT),
            "name": f"{draw.pick('adjective', _ADJECTIVES)} {draw.pick('noun', _NOUNS)}",
            "overview": "",
            "production_code": "",
            "runtime": draw.number("runtime", 20, 65),
            "season_number": season,
            "show_id": tv_id,
            "still_path": draw.image("still"),
            "vote_average": draw.decimal("vote", 5.0, 9.5),
            "vote_count": draw.number("votes", 0, 500),
        }

    def season(self, tv_id: int, season: int) -> Json:
        """``/tv/{id}/season/{n}``; raises ``_BadRequest`` (404) for missing seasons."""
        first, counts = self._seasons(tv_id)
        if not 1 <= season <= len(counts):
            raise _BadRequest(404, NOT_FOUND)
        count = counts[season - 1]
        summary = self._season_summary(tv_id, season, first, count)
        episodes = [
            {**self.episode(tv_id, season, n, first, count), "crew": [], "guest_stars": []}
            for n in range(1, count + 1)
        ]
        return {
            "_id": _Draw("season", tv_id, season).hex_id("_id"),
            "air_date": summary["air_date"],
            "episodes": episodes,
            "id": summary["id"],
            "name": summary["name"],
            "overview": summary["overview"],
            "poster_path": summary["poster_path"],
            "season_number": season,
            "vote_average": summary["vote_average"],
        }

    # ------------------------------------------------------------ people

    def person(self, person_id: int) -> Json:
        """``/person/{id}``."""
        draw = _Draw("person", person_id)
        basics = _person_basics(person_id)
        birthday = draw.day("birthday", dt.date(1930, 1, 1), dt.date(2005, 12, 31))
        country = draw.pick("birth-country", _COUNTRIES)[1]
        return {
            "adult": False,
            "also_known_as": [],
            "biography": f"{basics['name']} is known for {basics['known_for_department'].lower()}.",
            "birthday": birthday.isoformat(),
            "deathday": None,
            "gender": basics["gender"],
            "homepage": None,
            "id": person_id,
            "imdb_id": _external_ids("person", person_id)["imdb_id"],
            "known_for_department": basics["known_for_department"],
            "name": basics["name"],
            "place_of_birth": country,
            "popularity": basics["popularity"],
            "profile_path": basics["profile_path"],
        }

    def person_item(self, person_id: int) -> Json:
        """A person as they appear in search results, with ``known_for``."""
        draw = _Draw("person", person_id)
        known_for = [
            self.movie_item(self._ref(draw, f"known{i}"), media_type=True)
            if draw.chance(f"known-kind{i}", 0.6)
            else self.tv_item(self._ref(draw, f"known{i}"), media_type=True)
            for i in range(3)
        ]
        return {**_person_basics(person_id), "media_type": "person", "known_for": known_for}

    # ------------------------------------------------------------ lists

    def _item(self, kind: str, id_: int, media_type: bool) -> Json:
        if kind == "movie":
            return self.movie_item(id_, media_type)
        if kind == "tv":
            return self.tv_item(id_, media_type)
        return self.person_item(id_)

    def _listing(
        self,
        key: str,
        kinds: Sequence[str],
        total: int,
        page: int,
        *,
        media_type: bool,
        first: Sequence[tuple[str, int]] = (),
    ) -> Json:
        """A deterministic virtual list of ``total`` items, ``first`` at its head."""
        draw = _Draw("list", key)
        results = []
        for index in range((page - 1) * _PAGE_SIZE, min(page * _PAGE_SIZE, total)):
            if index < len(first):
                kind, id_ = first[index]
            else:
                kind, id_ = draw.pick(f"kind{index}", kinds), self._ref(draw, f"id{index}")
            results.append(self._item(kind, id_, media_type))
        return _paged(results, page, total)

    def search(self, kinds: Sequence[str], query: Mapping[str, str]) -> Json:
        """``/search/{multi,movie,tv}``: known titles that contain the query first."""
        page = _page(query)
        text = " ".join(query.get("query", "").split()).casefold()
        if not text:
            return _paged([], page, 0)
        known: list[tuple[str, int]] = []
        if "movie" in kinds:
            known += [("movie", i) for i in _KNOWN_MOVIES if text in _movie_title(i).casefold()]
        if "tv" in kinds:
            known += [("tv", i) for i in _KNOWN_TV if text in _tv_name(i).casefold()]
        if "person" in kinds:
            known += [("person", i) for i, p in _KNOWN_PEOPLE.items() if text in p[0].casefold()]
        known = [(kind, i) for kind, i in known if self.exists(i)]
        total = len(known) + _Draw("search", text).number("total", 0, 240)
        key = f"search:{','.join(kinds)}:{text}"
        return self._listing(key, kinds, total, page, media_type=len(kinds) > 1, first=known)

    def discover(self, kind: str, query: Mapping[str, str]) -> Json:
        """``/discover/{movie,tv}``: results depend on the filters, not their order."""
        page = _page(query)
        filters = sorted((k, v) for k, v in query.items() if k not in _NOT_FILTERS)
        key = f"discover:{kind}:{filters}"
        total = _Draw(key).number("total", 50, 20_000)
        return self._listing(key, [kind], total, page, media_type=False)

    def trending(self, kind: str, window: str, query: Mapping[str, str]) -> Json:
        """``/trending/{all,movie,tv,person}/{day,week}``."""
        kinds = ["movie", "movie", "tv"] if kind == "all" else [kind]
        key = f"trending:{kind}:{window}"
        return self._listing(key, kinds, 10_000, _page(query), media_type=True)

    def find(self, external_id: str, query: Mapping[str, str]) -> Json:
        """``/find/{external_id}?external_source=...``."""
        source = query.get("external_source", "")
        if source not in _EXTERNAL_SOURCES:
            raise _BadRequest(422, _BAD_PARAMETERS)
        found: dict[str, list[Json]] = {
            f"{kind}_results": [] for kind in ("movie", "person", "tv", "tv_episode", "tv_season")
        }
        for kind, id_ in self._resolve_external(source, external_id):
            if self.exists(id_):
                found[f"{kind}_results"].append(self._item(kind, id_, media_type=True))
        return found

    @staticmethod
    def _resolve_external(source: str, value: str) -> list[tuple[str, int]]:
        known = _KNOWN_EXTERNAL_INDEX.get((source, value))
        if known is not None:
            return [known]
        for pattern_source, pattern, kind in _EXTERNAL_PATTERNS:
            match = pattern.fullmatch(value)
            if pattern_source == source and match is not None:
                id_ = int(match.group(1))
                # A generated id must also map forward, or a real title's id would
                # answer to a second, made-up external id.
                if str(_external_ids(kind, id_).get(source)) == value:
                    return [(kind, id_)]
        return []

    # ------------------------------------------------------------ reference data

    @staticmethod
    def configuration(images_base_url: str) -> Json:
        """``/configuration``, pointing image URLs at ``images_base_url``."""
        return {
            "change_keys": list(_CHANGE_KEYS),
            "images": {
                "base_url": images_base_url.replace("https://", "http://", 1),
                "secure_base_url": images_base_url,
                **{name: list(sizes) for name, sizes in _IMAGE_SIZES.items()},
            },
        }

    @staticmethod
    def watch_providers(query: Mapping[str, str]) -> Json:
        """``/watch/providers/{movie,tv}``, filtered by ``watch_region``."""
        region = query.get("watch_region")
        results = []
        for provider_id, name in _PROVIDERS:
            draw = _Draw("provider", provider_id)
            priorities = {
                code: draw.number(f"priority-{code}", 0, 40)
                for code, _, _ in _COUNTRIES
                if code == "US" or draw.chance(f"in-{code}", 0.6)
            }
            if region is not None and region not in priorities:
                continue
            results.append(
                {
                    "display_priorities": priorities,
                    "display_priority": priorities[region] if region else min(priorities.values()),
                    "logo_path": draw.image("logo"),
                    "provider_name": name,
                    "provider_id": provider_id,
                }
            )
        return {"results": results}


def _page(query: Mapping[str, str]) -> int:
    raw = query.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_PAGE:
        raise _BadRequest(400, _BAD_PAGE)
    return int(raw)


def _append(query: Mapping[str, str]) -> list[str]:
    return [part.strip() for part in query.get("append_to_response", "").split(",")]


def _countries() -> list[Json]:
    return [
        {"iso_3166_1": code, "english_name": english, "native_name": native}
        for code, english, native in _COUNTRIES
    ]


def _keyword(keyword_id: int) -> Json:
    return {"id": keyword_id, "name": _Draw("keyword", keyword_id).pick("name", _KEYWORDS)}


def _genre_list(kind: str) -> Json:
    return {"genres": _genres([genre_id for genre_id, _ in _GENRES_BY_KIND[kind]])}


def _certifications(kind: str) -> Json:
    return {
        "certifications": {
            country: [
                {"certification": code, "meaning": f"Rated {code} in {country}.", "order": order}
                for order, code in enumerate(codes, start=1)
            ]
            for country, codes in _CERTIFICATIONS[kind].items()
        }
    }


_MOVIE_ITEM_KEYS = (
    "adult", "backdrop_path", "id", "original_language", "original_title", "overview",
    "popularity", "poster_path", "release_date", "title", "video", "vote_average", "vote_count",
)  # fmt: skip
_TV_ITEM_KEYS = (
    "adult", "backdrop_path", "id", "origin_country", "original_language", "original_name",
    "overview", "popularity", "poster_path", "first_air_date", "name", "vote_average",
    "vote_count",
)  # fmt: skip
_CREATOR_KEYS = ("id", "credit_id", "name", "original_name", "gender", "profile_path")
# Query parameters that do not change which titles discover returns.
_NOT_FILTERS = frozenset({"api_key", "page", "language", "region"})


def _route(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(id|season)\}", r"(?P<\1>[0-9]+)", template)
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(pattern)


_ROUTES: list[_Route] = [
    (_route("/movie/{id}"), lambda c, r: c.movie(r.id, _append(r.query))),
    (_route("/tv/{id}"), lambda c, r: c.tv(r.id, _append(r.query))),
    (_route("/tv/{id}/season/{season}"), lambda c, r: c.season(r.id, int(r.params["season"]))),
    (_route("/person/{id}"), lambda c, r: c.person(r.id)),
    (_route("/collection/{id}"), lambda c, r: c.collection(r.id)),
    (_route("/keyword/{id}"), lambda c, r: _keyword(r.id)),
    (_route("/search/multi"), lambda c, r: c.search(("movie", "tv", "person"), r.query)),
    (_route("/search/movie"), lambda c, r: c.search(("movie",), r.query)),
    (_route("/search/tv"), lambda c, r: c.search(("tv",), r.query)),
    (_route("/discover/(?P<kind>movie|tv)"), lambda c, r: c.discover(r.params["kind"], r.query)),
    (
        _route("/trending/(?P<kind>all|movie|tv|person)/(?P<window>day|week)"),
        lambda c, r: c.trending(r.params["kind"], r.params["window"], r.query),
    ),
    (_route("/configuration"), lambda c, r: c.configuration(r.images_base_url)),
    (_route("/configuration/languages"), lambda c, r: [_language(code) for code, *_ in _LANGUAGES]),
    (_route("/configuration/countries"), lambda c, r: _countries()),
    (_route("/genre/(?P<kind>movie|tv)/list"), lambda c, r: _genre_list(r.params["kind"])),
    (_route("/watch/providers/regions"), lambda c, r: {"results": _countries()}),
    (_route("/watch/providers/(?:movie|tv)"), lambda c, r: c.watch_providers(r.query)),
    (
        _route("/certification/(?P<kind>movie|tv)/list"),
        lambda c, r: _certifications(r.params["kind"]),
    ),
    (_route("/find/{external_id}"), lambda c, r: c.find(r.params["external_id"], r.query)),
]


# ---------------------------------------------------------------- images

_IMAGE_FILE = re.compile(r"[A-Za-z0-9_-]{1,64}\.(?P<ext>jpg|jpeg|png)")
_JPEG_TYPE, _PNG_TYPE = "image/jpeg", "image/png"


def image_bytes(size: str, file_name: str) -> tuple[str, bytes] | None:
    """Content type and bytes of a tiny valid image for ``/t/p/{size}/{file_name}``.

    Returns ``None`` for unknown sizes and names that are not ``name.jpg`` /
    ``name.png``. The picture is one pixel whose shade comes from the name; a
    comment holds ``size/file_name`` so every URL has its own bytes.
    """
    match = _IMAGE_FILE.fullmatch(file_name)
    if size not in _ALL_SIZES or match is None:
        return None
    label = f"{size}/{file_name}".encode()
    shade = _Draw("image", file_name).number("shade", 24, 231)
    if match.group("ext") == "png":
        return _PNG_TYPE, _png(label, shade)
    return _JPEG_TYPE, _jpeg(label, shade)


def _png(label: bytes, shade: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pixel = bytes((0, shade, 255 - shade, shade // 2))  # filter byte, then RGB
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)),
            chunk(b"tEXt", b"Comment\x00" + label),
            chunk(b"IDAT", zlib.compress(pixel)),
            chunk(b"IEND", b""),
        )
    )


def _jpeg(label: bytes, shade: int) -> bytes:
    """A baseline greyscale 1x1 JPEG: one 8x8 block holding only a DC coefficient."""

    def segment(marker: int, data: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data

    # A flat block's DC coefficient is 8x the level-shifted sample (quantiser 1).
    dc = 8 * (shade - 128)
    category = abs(dc).bit_length()
    value_bits = dc if dc >= 0 else dc + (1 << category) - 1
    # Both Huffman tables hold a single 1-bit code "0": the DC category, then
    # end-of-block. Pad the scan with 1s and stuff a zero after any 0xFF.
    bits = "0" + (format(value_bits, f"0{category}b") if category else "") + "0"
    bits += "1" * (-len(bits) % 8)
    scan = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    scan = scan.replace(b"\xff", b"\xff\x00")
    return b"".join(
        (
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xFE, label),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00"),
            segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + bytes((category,))),
            segment(0xC4, b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            scan,
            b"\xff\xd9",
        )
    )
