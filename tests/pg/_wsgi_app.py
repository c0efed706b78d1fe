"""A bare WSGI app for the gunicorn tests: POST creates the request for one movie, once.

Built the way ``docs/deploy.md`` says: the pool and the lock are created at
import (in gunicorn's master under ``--preload``, before the fork) and the
pool is opened in each worker after the fork (``_gunicorn_conf.py``).
Each POST records its critical section's start and end, so the test can
check that no two overlapped, in any worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from psycopg import sql

from seerrperf import PgAdvisoryLock, pool_factory

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

TABLE = sql.Identifier(os.environ["LOCK_APP_TABLE"])
pool = pool_factory(os.environ["LOCK_APP_DSN"], min_size=1, max_size=4)  # not opened yet
lock = PgAdvisoryLock(pool, namespace=os.environ["LOCK_APP_TABLE"])


def open_in_worker() -> None:
    """Open the pool in this worker (gunicorn's post_worker_init) and say so."""
    pool.open(wait=True, timeout=30)
    Path(os.environ["LOCK_APP_READY"], str(os.getpid())).touch()


def create_request() -> bool:
    with lock(("movie", 603), timeout=60) as conn:
        started = conn.execute("SELECT clock_timestamp()").fetchone()
        found = conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE kind = 'request'").format(TABLE)
        ).fetchone()
        if found is None:
            conn.execute("SELECT pg_sleep(0.05)")  # widen the race the lock must close
            conn.execute(
                sql.SQL("INSERT INTO {} (kind, pid) VALUES ('request', %s)").format(TABLE),
                (os.getpid(),),
            )
        assert started is not None
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (kind, pid, started, ended)"
                " VALUES ('attempt', %s, %s, clock_timestamp())"
            ).format(TABLE),
            (os.getpid(), started[0]),
        )
    return found is None


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
        return [b"POST only\n"]
    created = create_request()
    body = json.dumps({"created": created, "pid": os.getpid()}).encode()
    start_response("201 Created" if created else "200 OK", [("Content-Type", "application/json")])
    return [body]
