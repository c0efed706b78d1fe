"""The demo runs end to end (short mode) and its numbers keep their invariants."""

from __future__ import annotations

from pathlib import Path

import anyio

from seerrperf._demo import pool_comparison, run_demo
from seerrperf._demo_app import LoadPlan, compare_builds, load_media_app


def test_demo_quick_runs_and_passes(postgres_dsn: str) -> None:
    lines: list[str] = []
    assert run_demo(dsn=postgres_dsn, tasks=20, quick=True, say=lines.append) == 0
    text = "\n".join(lines)
    assert "Seed claim vs measured" in text
    assert "server connections opened" in text
    assert "seerrperf async_pool_factory" in text
    assert "status=pass" in text


def test_seerrperf_build_beats_the_naive_build_on_the_invariants(postgres_dsn: str) -> None:
    media_app = load_media_app()
    assert not isinstance(media_app, str), media_app
    plan = LoadPlan.quick()
    naive, ours = anyio.run(compare_builds, media_app, postgres_dsn, plan, lambda _: None)
    assert (naive.build, ours.build) == ("naive", "seerrperf")
    assert ours.duplicates == 0
    assert ours.errors == naive.errors == 0
    assert naive.server_connections is not None
    assert ours.server_connections is not None
    assert ours.server_connections < naive.server_connections
    assert ours.tmdb_calls < naive.tmdb_calls
    assert ours.cache_hit_rate is not None
    assert naive.cache_hit_rate is None


def test_demo_explains_a_missing_example_app(tmp_path: Path) -> None:
    message = load_media_app(roots=[tmp_path])
    assert isinstance(message, str)
    assert "examples/media_app was not found" in message


def test_pool_uses_fewer_server_connections_than_connect_per_request(postgres_dsn: str) -> None:
    naive, default, ours = anyio.run(pool_comparison, postgres_dsn, 60)
    assert naive.errors == default.errors == ours.errors == 0
    assert naive.server_connections == 60
    assert ours.server_connections <= 20
    assert default.server_connections <= 4
