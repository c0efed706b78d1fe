"""The demo (examples/demo) runs end to end (short mode) and its numbers keep their invariants."""

from __future__ import annotations

import sys

import anyio
import pytest

from demo.__main__ import main as demo_main
from demo.builds import compare_builds, load_media_app
from demo.fleet import FleetPlan, busiest_second, fleet_comparison
from demo.load import LoadPlan
from demo.run import run_demo
from demo.workload import pool_comparison
from seerrperf.__main__ import main as seerrperf_main


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


def test_demo_explains_a_missing_example_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "media_app", None)  # makes the import fail
    message = load_media_app()
    assert isinstance(message, str)
    assert "examples/media_app was not found" in message


def test_pool_uses_fewer_server_connections_than_connect_per_request(postgres_dsn: str) -> None:
    naive, default, ours = anyio.run(pool_comparison, postgres_dsn, 60)
    assert naive.errors == default.errors == ours.errors == 0
    assert naive.server_connections == 60
    assert ours.server_connections <= 20
    assert default.server_connections <= 4


def test_demo_command_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m demo" in capsys.readouterr().out


def test_the_demo_is_no_longer_a_seerrperf_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        seerrperf_main(["demo"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'demo'" in capsys.readouterr().err


def test_busiest_second_counts_the_most_events_in_any_one_second_window() -> None:
    assert busiest_second([]) == 0
    assert busiest_second([0.0, 0.5, 0.99, 1.0, 1.2, 5.0]) == 4  # 0.5 .. 1.2
    assert busiest_second([3.0, 1.0, 2.0]) == 1


@pytest.mark.slow
def test_the_fleet_shares_one_cache_and_one_budget_through_redis(redis_url: str) -> None:
    plan = FleetPlan.quick()
    local, shared = fleet_comparison(plan, redis_url)
    assert (local.build, shared.build) == ("per process", "shared tier")
    assert local.errors == shared.errors == 0
    assert shared.distinct_ids == local.distinct_ids
    assert shared.upstream_calls == shared.distinct_ids  # one call per title for the fleet
    assert local.upstream_calls > shared.upstream_calls  # each process asked on its own
    assert shared.busiest_second <= plan.max_rps
