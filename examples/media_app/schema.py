"""The schema, created idempotently at start-up, and every SQL statement the routes run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

_TABLES = """
CREATE TABLE IF NOT EXISTS app_user (
    id bigint PRIMARY KEY,
    movie_limit integer NOT NULL CHECK (movie_limit >= 0),
    series_limit integer NOT NULL CHECK (series_limit >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS media_request (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    media_type text NOT NULL CHECK (media_type IN ('movie', 'tv')),
    tmdb_id integer NOT NULL CHECK (tmdb_id > 0),
    title text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'declined', 'processing', 'available')),
    requested_by bigint NOT NULL REFERENCES app_user (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS media_request_by_user
    ON media_request (requested_by, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS media_request_recent ON media_request (created_at DESC, id DESC);
"""

# The last line of defence behind the lock: at most one active request per title.
_ONE_ACTIVE = """
CREATE UNIQUE INDEX IF NOT EXISTS media_request_one_active
    ON media_request (media_type, tmdb_id)
    WHERE status IN ('pending', 'approved', 'processing')
"""

# Serialises start-up across workers: concurrent CREATE ... IF NOT EXISTS can
# still collide in the catalogue.
_SCHEMA_LOCK_ID = 0x6D656469615F6170  # b"media_ap"


async def ensure_schema(conn: AsyncConnection[Any], *, unique_index: bool) -> None:
    """Create the tables and indexes that do not exist yet.

    Args:
        conn: A connection in autocommit mode.
        unique_index: Also create the partial unique index on active requests
            (the naive build leaves it out, so duplicates can happen).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
        await conn.execute(_TABLES)
        if unique_index:
            await conn.execute(_ONE_ACTIVE)


class DuplicateRequest(Exception):
    """An active request for the title exists already."""


class QuotaExceeded(Exception):
    """The user has as many active requests of this type as allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request limit reached ({limit})")
        self.limit = limit


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _request_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "mediaType": row["media_type"],
        "mediaId": row["tmdb_id"],
        "title": row["title"],
        "status": row["status"],
        "requestedBy": row["requested_by"],
        "createdAt": _iso(row["created_at"]),
    }


_COLUMNS = "id, media_type, tmdb_id, title, status, requested_by, created_at"

# Creates the demo user on first sight. Inside a transaction the no-op update
# also locks the user's row, so one user's concurrent requests cannot overrun
# the quota.
_UPSERT_USER = """
INSERT INTO app_user (id, movie_limit, series_limit) VALUES (%(user)s, %(movies)s, %(series)s)
ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id
RETURNING CASE WHEN %(type)s = 'movie' THEN movie_limit ELSE series_limit END AS quota
"""

_CHECK = """
SELECT
    (SELECT count(*) FROM media_request
      WHERE requested_by = %(user)s AND media_type = %(type)s
        AND status IN ('pending', 'approved', 'processing')) AS used,
    (SELECT id FROM media_request
      WHERE media_type = %(type)s AND tmdb_id = %(id)s
        AND status IN ('pending', 'approved', 'processing')
      LIMIT 1) AS existing
"""

_INSERT = f"""
INSERT INTO media_request (media_type, tmdb_id, title, requested_by)
VALUES (%(type)s, %(id)s, %(title)s, %(user)s)
RETURNING {_COLUMNS}
"""


async def create_request(
    conn: AsyncConnection[Any],
    *,
    user: int,
    media_type: str,
    tmdb_id: int,
    title: str,
    movie_limit: int,
    series_limit: int,
) -> dict[str, Any]:
    """Check the quota and for an active request, then insert: check-then-insert.

    Safe only under a per-title lock (or with the unique index behind it);
    the naive build runs it bare.

    Raises:
        DuplicateRequest: The title has an active request.
        QuotaExceeded: The user is at their limit for ``media_type``.
        psycopg.errors.UniqueViolation: A duplicate got past the check.
    """
    params = {
        "user": user,
        "type": media_type,
        "id": tmdb_id,
        "title": title,
        "movies": movie_limit,
        "series": series_limit,
    }
    cur = conn.cursor(row_factory=dict_row)
    user_row = await (await cur.execute(_UPSERT_USER, params)).fetchone()
    check = await (await cur.execute(_CHECK, params)).fetchone()
    assert user_row is not None
    assert check is not None
    if check["existing"] is not None:
        raise DuplicateRequest(check["existing"])
    if check["used"] >= user_row["quota"]:
        raise QuotaExceeded(user_row["quota"])
    row = await (await cur.execute(_INSERT, params)).fetchone()
    assert row is not None
    return _request_json(row)


_USER_REQUESTS = f"""
SELECT t.total, r.*
FROM (SELECT count(*) AS total FROM media_request WHERE requested_by = %(user)s) t
LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM media_request WHERE requested_by = %(user)s
    ORDER BY created_at DESC, id DESC LIMIT %(take)s OFFSET %(skip)s
) r ON true
"""


async def user_requests(
    conn: AsyncConnection[Any], user: int, *, take: int, skip: int
) -> tuple[int, list[dict[str, Any]]]:
    """Return the user's total number of requests and one page of them, newest first."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        _USER_REQUESTS, {"user": user, "take": take, "skip": skip}
    )
    rows = await cur.fetchall()
    total = int(rows[0]["total"]) if rows else 0
    return total, [_request_json(row) for row in rows if row["id"] is not None]


# One round trip for the whole profile summary (the seed's CTE).
_USER_STATS = """
WITH mine AS (
    SELECT media_type, status, status IN ('pending', 'approved', 'processing') AS active
    FROM media_request WHERE requested_by = %(user)s
), by_type AS (
    SELECT media_type, count(*) AS n, count(*) FILTER (WHERE active) AS active
    FROM mine GROUP BY media_type
), by_status AS (
    SELECT status, count(*) AS n FROM mine GROUP BY status
), limits AS (
    SELECT movie_limit, series_limit FROM app_user WHERE id = %(user)s
)
SELECT
    (SELECT count(*) FROM mine) AS total,
    (SELECT coalesce(jsonb_object_agg(media_type, n), '{}') FROM by_type) AS by_type,
    (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM by_status) AS by_status,
    coalesce((SELECT active FROM by_type WHERE media_type = 'movie'), 0) AS movie_active,
    coalesce((SELECT active FROM by_type WHERE media_type = 'tv'), 0) AS tv_active,
    coalesce((SELECT movie_limit FROM limits), %(movies)s) AS movie_limit,
    coalesce((SELECT series_limit FROM limits), %(series)s) AS series_limit
"""


async def user_stats(
    conn: AsyncConnection[Any], user: int, *, movie_limit: int, series_limit: int
) -> dict[str, Any]:
    """Totals, counts per type and per status, and the remaining quota, in one query."""
    params = {"user": user, "movies": movie_limit, "series": series_limit}
    cur = await conn.cursor(row_factory=dict_row).execute(_USER_STATS, params)
    row = await cur.fetchone()
    assert row is not None

    def quota(limit: int, used: int) -> dict[str, int]:
        return {"limit": limit, "used": used, "remaining": max(0, limit - used)}

    return {
        "total": row["total"],
        "byType": {"movie": 0, "tv": 0, **row["by_type"]},
        "byStatus": row["by_status"],
        "quota": {
            "movie": quota(row["movie_limit"], row["movie_active"]),
            "tv": quota(row["series_limit"], row["tv_active"]),
        },
    }


_RECENT = f"SELECT {_COLUMNS} FROM media_request ORDER BY created_at DESC, id DESC LIMIT %s"


async def recent_requests(conn: AsyncConnection[Any], take: int) -> list[dict[str, Any]]:
    """The newest requests of all users."""
    cur = await conn.cursor(row_factory=dict_row).execute(_RECENT, (take,))
    return [_request_json(row) for row in await cur.fetchall()]


async def count_duplicates(conn: AsyncConnection[Any]) -> int:
    """Active requests beyond the first per title: what the unique index forbids."""
    cur = await conn.execute(
        "SELECT count(*) - count(DISTINCT (media_type, tmdb_id)) FROM media_request"
        " WHERE status IN ('pending', 'approved', 'processing')"
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0
