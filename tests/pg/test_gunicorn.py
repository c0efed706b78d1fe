"""PgAdvisoryLock in a WSGI app under real gunicorn: sync and gthread workers, --preload or not.

Twenty clients POST "request movie 603" at once; exactly one request row
results, and no two critical sections overlapped, whichever worker process
or thread served them. Under ``--preload`` the pool and the lock are created
in the master before the fork and the pool is opened in each worker.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0
CLIENTS = 20


@pytest.fixture
def table(postgres_dsn: str) -> Iterator[str]:
    name = f"wsgi_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigserial PRIMARY KEY, kind text NOT NULL,"
                " pid integer NOT NULL, started timestamptz, ended timestamptz)"
            ).format(sql.Identifier(name))
        )
        yield name
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, go: threading.Barrier, answers: list[tuple[int, dict[str, object]]]) -> None:
    go.wait(DEADLINE)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request("POST", "/api/v1/request", body=b"{}")
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read(4096))))
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
@pytest.mark.parametrize(("workers", "threads"), [(4, 1), (2, 8)], ids=["sync-w4", "gthread-w2-t8"])
def test_duplicate_posts_make_one_row(
    postgres_dsn: str, table: str, tmp_path: Path, workers: int, threads: int, preload: bool
) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    port = _free_port()
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:tests.pg._gunicorn_conf",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--graceful-timeout", "5",
        "--log-level", "warning",
    ]  # fmt: skip
    if threads > 1:
        argv += ["--worker-class", "gthread", "--threads", str(threads)]
    if preload:
        argv.append("--preload")
    env = {
        **os.environ,
        "LOCK_APP_DSN": postgres_dsn,
        "LOCK_APP_TABLE": table,
        "LOCK_APP_READY": str(ready),
    }
    server = subprocess.Popen(
        [*argv, "tests.pg._wsgi_app:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while len(list(ready.iterdir())) < workers:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not boot {workers} workers")
            time.sleep(0.02)
        go = threading.Barrier(CLIENTS)
        answers: list[tuple[int, dict[str, object]]] = []
        clients = [threading.Thread(target=_post, args=(port, go, answers)) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(DEADLINE)
            assert not client.is_alive()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, errors = server.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            _, errors = server.communicate()
    assert b"Traceback" not in errors, errors.decode(errors="replace")
    assert sorted(status for status, _ in answers) == [200] * (CLIENTS - 1) + [201]
    with psycopg.connect(postgres_dsn) as conn:
        ident = sql.Identifier(table)
        [(requests,)] = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE kind = 'request'").format(ident)
        ).fetchall()
        sections = conn.execute(
            sql.SQL(
                "SELECT pid, started, ended FROM {} WHERE kind = 'attempt' ORDER BY started"
            ).format(ident)
        ).fetchall()
    assert requests == 1
    assert len(sections) == CLIENTS
    for (_, _, ended), (_, started, _) in itertools.pairwise(sections):
        assert ended <= started  # one critical section at a time, across every worker
    pids = {pid for pid, _, _ in sections}
    if threads == 1:
        # A sync worker serves one request at a time, so 20 at once reach
        # several processes: the lock was exercised across processes.
        assert len(pids) >= 2
