"""The demo runs end to end (short mode) and its numbers keep their invariants."""

from __future__ import annotations

import anyio

from seerrperf._demo import pool_comparison, run_demo


def test_demo_runs_and_passes(postgres_dsn: str) -> None:
    lines: list[str] = []
    assert run_demo(dsn=postgres_dsn, tasks=20, say=lines.append) == 0
    text = "\n".join(lines)
    assert "seerrperf async_pool_factory" in text
    assert "status=pass" in text


def test_pool_uses_fewer_server_connections_than_connect_per_request(postgres_dsn: str) -> None:
    naive, default, ours = anyio.run(pool_comparison, postgres_dsn, 60)
    assert naive.errors == default.errors == ours.errors == 0
    assert naive.server_connections == 60
    assert ours.server_connections <= 20
    assert default.server_connections <= 4
