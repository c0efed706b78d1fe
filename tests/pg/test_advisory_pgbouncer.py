"""PgAdvisoryLock through a real PgBouncer in transaction pooling mode.

A transaction-level advisory lock lives and dies with its transaction, which
PgBouncer keeps on one server connection, so it works where session locks
(and session ``SET``) would leak between clients. Five locks, each on a pool
of its own (five "processes"), share three server connections and make 50
read-then-write increments of one counter: exactly 50 must stick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from seerrperf import PgAdvisoryLock
from tests._support import require_program

DEADLINE = 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer_dsn(postgres_dsn: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test server (a minimal one of our own)."""
    binary = require_program("pgbouncer", "pgbouncer")
    target = conninfo_to_dict(postgres_dsn)
    user = str(target.get("user", "postgres"))
    server = " ".join(
        f"{k}={target[k]}" for k in ("host", "port", "user", "password") if target.get(k)
    )
    port = _free_port()
    # pgbouncer refuses to run as root: as root it runs as nobody, which must read its files.
    folder = Path(tempfile.mkdtemp(prefix="seerrperf-pgbouncer-"))
    folder.chmod(0o755)
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 3
max_client_conn = 100
ignore_startup_parameters = extra_float_digits,options
"""
    )
    ini.chmod(0o644)
    log = (folder / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(
        [binary, str(ini)],
        stdout=log,
        stderr=subprocess.STDOUT,
        user="nobody" if os.geteuid() == 0 else None,
    )
    dsn = make_conninfo(
        host="127.0.0.1", port=port, user=user, dbname=str(target.get("dbname", user))
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "pgbouncer did not start: " + (folder / "pgbouncer.log").read_text()
                    )
                time.sleep(0.05)
        yield dsn
    finally:
        proc.terminate()
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_fifty_increments_through_pgbouncer_transaction_mode_make_fifty(
    postgres_dsn: str, pgbouncer_dsn: str
) -> None:
    name = sql.Identifier(f"counter_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE TABLE {} (n integer NOT NULL)").format(name))
        admin.execute(sql.SQL("INSERT INTO {} VALUES (0)").format(name))
    pools = [
        ConnectionPool(
            pgbouncer_dsn,
            min_size=1,
            max_size=2,
            open=False,
            kwargs={"prepare_threshold": None},  # PgBouncer < 1.21 has no prepared statements
        )
        for _ in range(5)
    ]
    problems: list[BaseException] = []

    def increment(lock: PgAdvisoryLock) -> None:
        try:
            for _ in range(5):
                with lock(("counter", 1), timeout=DEADLINE) as conn:
                    row = conn.execute(sql.SQL("SELECT n FROM {}").format(name)).fetchone()
                    assert row is not None
                    conn.execute("SELECT pg_sleep(0.005)")  # read, think, write: a lost update
                    conn.execute(sql.SQL("UPDATE {} SET n = %s").format(name), (row[0] + 1,))
        except BaseException as exc:
            problems.append(exc)

    try:
        for pool in pools:
            pool.open(wait=True, timeout=DEADLINE)
        locks = [PgAdvisoryLock(pool, namespace="pgbouncer") for pool in pools]
        threads = [
            threading.Thread(target=increment, args=(lock,)) for lock in locks for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE * 2)
            assert not thread.is_alive()
    finally:
        for pool in pools:
            pool.close()
    assert problems == []
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        [(n,)] = admin.execute(sql.SQL("SELECT n FROM {}").format(name)).fetchall()
        admin.execute(sql.SQL("DROP TABLE {}").format(name))
    assert n == 50
    assert sum(lock.stats().acquisitions for lock in locks) == 50
