"""The schema and every SQL statement the views run (psycopg, sync)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS media_request (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    media_type text NOT NULL CHECK (media_type IN ('movie', 'tv')),
    tmdb_id integer NOT NULL CHECK (tmdb_id > 0),
    title text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'declined', 'available')),
    requested_by bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS media_request_by_user
    ON media_request (requested_by, created_at DESC, id DESC);
-- The last line of defence behind the lock: one active request per title.
CREATE UNIQUE INDEX IF NOT EXISTS media_request_one_active
    ON media_request (media_type, tmdb_id) WHERE status IN ('pending', 'approved');
"""

_COLUMNS = "id, media_type, tmdb_id, title, status, requested_by, created_at"
_ACTIVE = """
SELECT 1 FROM media_request
WHERE media_type = %s AND tmdb_id = %s AND status IN ('pending', 'approved')
"""
_INSERT = f"""
INSERT INTO media_request (media_type, tmdb_id, title, requested_by)
VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}
"""
_MINE = f"""
SELECT {_COLUMNS} FROM media_request WHERE requested_by = %s
ORDER BY created_at DESC, id DESC LIMIT %s
"""


class DuplicateRequest(Exception):
    """The title has an active request already."""


def create_schema(conn: Connection[Any]) -> None:
    """Create what does not exist yet (``flask --app flask_app init-db``)."""
    with conn.transaction():
        conn.execute(SCHEMA)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    created: dt.datetime = row["created_at"]
    return {
        "id": row["id"],
        "mediaType": row["media_type"],
        "mediaId": row["tmdb_id"],
        "title": row["title"],
        "status": row["status"],
        "requestedBy": row["requested_by"],
        "createdAt": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


def create_request(
    conn: Connection[Any], *, media_type: str, tmdb_id: int, title: str, user: int
) -> dict[str, Any]:
    """Check for an active request, then insert: safe under the per-title lock.

    Raises:
        DuplicateRequest: the title has an active request.
        psycopg.errors.UniqueViolation: a writer that bypassed the lock got there first.
    """
    if conn.execute(_ACTIVE, (media_type, tmdb_id)).fetchone() is not None:
        raise DuplicateRequest
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(_INSERT, (media_type, tmdb_id, title, user)).fetchone()
    assert row is not None
    return _json(row)


def user_requests(conn: Connection[Any], user: int, take: int) -> list[dict[str, Any]]:
    """The user's newest requests."""
    cur = conn.cursor(row_factory=dict_row)
    return [_json(row) for row in cur.execute(_MINE, (user, take)).fetchall()]
