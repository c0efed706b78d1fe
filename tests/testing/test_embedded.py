"""seerrperf.testing.EmbeddedPostgres: settings, life cycle, restart, repr, running as root."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from seerrperf.testing import EmbeddedPostgres, EmbeddedPostgresError


def _running_program(server: EmbeddedPostgres) -> Path:
    """The postgres binary the server's postmaster runs (Linux ``/proc``)."""
    return Path(os.readlink(f"/proc/{server.pid}/exe"))


def test_settings_with_spaces_and_quotes_reach_the_server() -> None:
    settings = {"application_name": "my 'demo' app", "log_line_prefix": "%m [%p] "}
    with EmbeddedPostgres(settings=settings) as server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("my 'demo' app",)
        assert conn.execute("SHOW log_line_prefix").fetchone() == ("%m [%p] ",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)  # defaults still apply


def test_start_stop_running_pid_and_close() -> None:
    server = EmbeddedPostgres()
    try:
        assert not server.running
        assert "stopped" in repr(server)
        with pytest.raises(EmbeddedPostgresError, match="not running"):
            _ = server.pid
        server.start()
        assert server.running
        pid = server.pid
        assert Path(f"/proc/{pid}").exists()
        server.start()  # already running: nothing happens
        assert server.pid == pid
        server.pause()
        server.stop()  # resumes a paused server first, so the shutdown can finish
        assert not server.running
        with pytest.raises(EmbeddedPostgresError, match="not running"):
            _ = server.pid
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)
        server.stop()  # already stopped: nothing happens
        server.start()  # the same data directory, initialised once
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.close()
    assert not server.running


def test_restart_keeps_the_port_and_the_data(own_server: EmbeddedPostgres) -> None:
    port = own_server.port
    with psycopg.connect(own_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (id int)")
    own_server.restart()
    assert own_server.port == port
    assert own_server.running
    assert "running" in repr(own_server)
    with psycopg.connect(own_server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM survives").fetchone() == (0,)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_binaries_in_a_private_folder_are_copied_where_the_server_user_can_run_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root in /root or a mktemp -d checkout: the venv is in a 0700 folder
    # that the unprivileged server user cannot traverse.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with EmbeddedPostgres() as reachable:  # runs from an installation the server user can reach
        install = _running_program(reachable).parent.parent
    (private / "pginstall").symlink_to(install, target_is_directory=True)
    monkeypatch.setenv("SEERRPERF_PG_BIN", str(private / "pginstall" / "bin"))
    with EmbeddedPostgres() as server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        used = _running_program(server)
    assert not used.is_relative_to(private)
    assert not used.is_relative_to(install)  # a copy, not the original behind the symlink
    assert used.stat().st_mode & 0o777 == 0o755
    for folder in (used.parent, used.parent.parent):  # nobody may change what root copied
        assert folder.stat().st_uid == os.geteuid()
        assert not folder.stat().st_mode & 0o022
