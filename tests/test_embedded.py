"""seerrperf.testing.EmbeddedPostgres: settings, restart, repr."""

from __future__ import annotations

import psycopg

from seerrperf.testing import EmbeddedPostgres


def test_settings_with_spaces_and_quotes_reach_the_server() -> None:
    settings = {"application_name": "my 'demo' app", "log_line_prefix": "%m [%p] "}
    with EmbeddedPostgres(settings=settings) as server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("my 'demo' app",)
        assert conn.execute("SHOW log_line_prefix").fetchone() == ("%m [%p] ",)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)  # defaults still apply


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
