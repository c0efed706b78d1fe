"""The extension on a real PostgreSQL: objects made on first use, per process, returned,
closed; the sync TMDB client on a FakeTmdb socket; both lock kinds; the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask, Response
from psycopg import sql

from seerrperf import CacheControl, KeyedLock, PgAdvisoryLock, SeerrperfError
from seerrperf.flask import Seerrperf, json_response
from seerrperf.testing import FakeTmdb

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[3]
NO_STORE = CacheControl(no_store=True)


def make(dsn: str, app_name: str, **config: Any) -> tuple[Flask, Seerrperf]:
    app = Flask(__name__)
    app.config.update(
        SEERRPERF_DATABASE_URL=dsn,
        SEERRPERF_POOL={"min_size": 1, "max_size": 4, "application_name": app_name},
        SEERRPERF_HEALTH_TIMEOUT=1.0,
        **config,
    )
    return app, Seerrperf(app)


def sessions(dsn: str, app_name: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    name = f"flask_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (n int)").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def rows(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql.SQL("SELECT n FROM {} ORDER BY n").format(sql.Identifier(table)))
        return [row[0] for row in cur.fetchall()]


def test_nothing_is_opened_until_first_use_then_one_set_per_process(
    postgres_dsn: str, app_name: str
) -> None:
    app, sp = make(postgres_dsn, app_name)
    assert sessions(postgres_dsn, app_name) == 0
    pools: list[object] = []

    def grab() -> None:
        with app.app_context():
            pools.append(sp.pool)

    with app.app_context():
        assert sp.stats().keys() == {"collected_at", "caches"}  # stats make nothing
        threads = [threading.Thread(target=grab) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        pool = sp.pool
        assert len(pools) == 8
        assert all(found is pool for found in pools)
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert isinstance(sp.lock, PgAdvisoryLock)  # the default kind
        stats = sp.stats()
        assert set(stats) == {"collected_at", "caches", "pool", "locks"}
        assert stats["locks"]["lock"]["held_keys"] == 0
        sp.close()
        assert pool.closed
        assert sp.pool is not pool  # made anew after close
        sp.close()


def test_the_requests_connection_is_returned_and_what_it_left_open_rolled_back(
    postgres_dsn: str, app_name: str, table: str
) -> None:
    app, sp = make(postgres_dsn, app_name)
    insert = sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(table))

    @app.post("/write/<int:n>/<mode>")
    def write(n: int, mode: str) -> Response:
        conn = sp.connection()
        assert sp.connection() is conn  # one per request
        conn.execute(insert, (n,))
        if mode == "commit":
            conn.commit()
        elif mode == "fail":
            raise psycopg.OperationalError("the server went away")  # an outage: 503
        return json_response({"n": n}, cache_control=NO_STORE)

    client = app.test_client()
    assert client.post("/write/1/commit").status_code == 200
    assert client.post("/write/2/forget").status_code == 200  # not committed
    assert client.post("/write/3/fail").status_code == 503
    with app.app_context(), contextlib.ExitStack() as stack:
        # Every connection came back: all max_size=4 of them can be checked out.
        held = [stack.enter_context(sp.pool.connection(timeout=10)) for _ in range(4)]
        assert len({id(conn) for conn in held}) == 4
    assert rows(postgres_dsn, table) == [1]
    sp.close()


def test_both_lock_kinds_take_one_call_shape(postgres_dsn: str, app_name: str) -> None:
    for kind, cls in (("advisory", PgAdvisoryLock), ("local", KeyedLock)):
        app, sp = make(postgres_dsn, f"{app_name}-{kind}", SEERRPERF_LOCK=kind)
        with app.app_context():
            lock = sp.lock
            assert isinstance(lock, cls)
            with lock(("movie", 603), timeout=2.0) as held:
                if held is None:
                    held = sp.connection()
                assert held.execute("SELECT 1").fetchone() == (1,)
            assert sp.stats()["locks"]["lock"]["acquisitions"] == 1
        sp.close()


def test_the_sync_tmdb_client_caches_and_needs_a_credential(
    postgres_dsn: str, app_name: str, fake_tmdb: tuple[FakeTmdb, str]
) -> None:
    fake, base_url = fake_tmdb
    fake.reset_counters()
    app, sp = make(
        postgres_dsn,
        app_name,
        SEERRPERF_TMDB_ACCESS_TOKEN=TOKEN,
        SEERRPERF_TMDB_BASE_URL=base_url,
        SEERRPERF_TMDB_OPTIONS={"max_rps": None},
    )
    with app.app_context():
        titles = [sp.tmdb.get_movie(603)["title"] for _ in range(3)]
        stats = sp.stats()
    assert titles == ["The Matrix"] * 3
    assert fake.stats().requests_by_path["/3/movie/603"] == 1
    assert stats["tmdb"]["cache_hits"] == 2
    assert sp.caches.names() == ["tmdb"]
    sp.close()
    bare, no_tmdb = make(postgres_dsn, app_name)
    with bare.app_context(), pytest.raises(SeerrperfError, match="SEERRPERF_TMDB_ACCESS_TOKEN"):
        _ = no_tmdb.tmdb
    no_tmdb.close()


def test_a_forked_child_makes_its_own_and_leaves_the_parents_alone(
    postgres_dsn: str, app_name: str
) -> None:
    app, sp = make(postgres_dsn, app_name)
    with app.app_context():
        parent_pool = sp.pool
        with parent_pool.connection() as conn:
            parent_backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        reader, writer = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with app.app_context():
                    pool = sp.pool
                    with pool.connection() as conn:
                        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
                    report = {"new": pool is not parent_pool, "other": backend != parent_backend}
                    os.write(writer, json.dumps(report).encode())
                    sp.close()
                code = 0
            finally:
                os._exit(code)
        os.close(writer)
        _, status = os.waitpid(child, 0)
        report = json.loads(os.read(reader, 1000))
        os.close(reader)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == {"new": True, "other": True}
        for _ in range(4):  # the child closed none of our connections
            with parent_pool.connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert parent_pool.get_stats().get("connections_lost", 0) == 0
    sp.close()


EXIT_SCRIPT = """
import atexit, sys
from flask import Flask
found = {}
# Registered first, so it runs after seerrperf's own exit hook.
atexit.register(lambda: print("closed" if found["pool"].closed else "open"))
from seerrperf.flask import Seerrperf
app = Flask("exit")
app.config["SEERRPERF_DATABASE_URL"] = sys.argv[1]
sp = Seerrperf(app)
with app.app_context():
    found["pool"] = sp.pool
    with sp.pool.connection() as conn:
        conn.execute("SELECT 1")
"""


def test_a_process_closes_its_objects_at_exit(postgres_dsn: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, postgres_dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "closed"), result.stderr


def test_the_cli_reports_health_and_figures(postgres_dsn: str, app_name: str) -> None:
    app, sp = make(postgres_dsn, app_name)
    runner = app.test_cli_runner()
    health = runner.invoke(args=["seerrperf", "health"])
    assert health.exit_code == 0, health.output
    assert json.loads(health.output)["status"] == "pass"
    stats = runner.invoke(args=["seerrperf", "stats"])
    assert stats.exit_code == 0
    assert json.loads(stats.output)["pool"]["pool_max"] == 4
    sp.close()
    down, down_sp = make("postgresql://nobody@127.0.0.1:9/none", app_name)
    failed = down.test_cli_runner().invoke(args=["seerrperf", "health"])
    assert failed.exit_code == 1
    assert json.loads(failed.output)["status"] == "fail"
    down_sp.close()
