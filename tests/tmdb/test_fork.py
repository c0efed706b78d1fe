"""A TMDB client created before a fork (gunicorn --preload, multiprocessing "fork").

The child must not use the parent's sockets: a client that owns its HTTP
client renews it in the child and works within its timeout; one given an
``http_client=`` fails at once with an error that says what to do. Real
processes, FakeTmdb on a real socket in the parent.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import sys
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from seerrperf import AsyncTmdbClient, ConfigurationError, TmdbClient
from seerrperf.testing import FakeTmdb

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")

WAIT = 30  # seconds; a hang would hit it, a working child answers in well under one


def in_forked_child(work: Callable[[], Any]) -> tuple[str, Any]:
    """Run ``work`` in a forked child; return ``("ok", result)`` or ``("error", message)``."""
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.queues.Queue[tuple[str, Any]] = context.Queue()

    def child() -> None:
        try:
            answers.put(("ok", work()))
        except Exception as exc:
            answers.put(("error", f"{type(exc).__name__}: {exc}"))

    process = context.Process(target=child)
    with warnings.catch_warnings():
        # Python >= 3.12 warns about forking a process with threads (the
        # server's); gunicorn --preload forks such processes too.
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    try:
        return answers.get(timeout=WAIT)
    finally:
        process.join(WAIT)
        assert process.exitcode == 0


def test_a_sync_client_created_before_a_fork_works_in_the_child() -> None:
    fake = FakeTmdb(api_key="tmdb-test-key")
    with fake.serve_in_thread() as base_url:
        tmdb = TmdbClient(api_key="tmdb-test-key", base_url=base_url, timeout=5)
        assert tmdb.get_movie(603)["title"] == "The Matrix"  # a pooled keep-alive connection
        before = fake.stats().connections

        def work() -> tuple[str, int, int]:
            movie = tmdb.get_movie(604)
            stats = tmdb.stats()
            return movie["title"], stats.requests, stats.upstream_calls

        status, answer = in_forked_child(work)
        assert status == "ok", answer
        title, requests, upstream_calls = answer
        assert title
        assert (requests, upstream_calls) == (1, 1)  # the child counts its own requests
        assert fake.stats().connections == before + 1  # its own connection, not the parent's
        assert tmdb.get_movie(605)  # the parent's connection still works
        tmdb.close()
    assert fake.stats().connections == before + 1


def test_an_async_client_created_before_a_fork_works_in_the_child() -> None:
    fake = FakeTmdb(api_key="tmdb-test-key")
    with fake.serve_in_thread() as base_url:
        tmdb = AsyncTmdbClient(api_key="tmdb-test-key", base_url=base_url, timeout=5)
        before = fake.stats().connections

        def work() -> str:
            async def fetch() -> str:
                movie = await tmdb.get_movie(604)
                return str(movie["title"])

            return anyio.run(fetch)

        status, answer = in_forked_child(work)
        assert status == "ok", answer
        assert fake.stats().connections == before + 1


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_an_injected_http_client_fails_at_once_in_the_child_and_says_what_to_do(
    twin: str,
) -> None:
    fake = FakeTmdb(api_key="tmdb-test-key")
    with fake.serve_in_thread() as base_url, httpx.Client() as http:
        tmdb: TmdbClient | AsyncTmdbClient
        if twin == "sync":
            tmdb = TmdbClient(api_key="tmdb-test-key", base_url=base_url, http_client=http)
            tmdb.get_movie(603)  # the injected client now holds a connection

            def work() -> Any:
                assert isinstance(tmdb, TmdbClient)
                return tmdb.get_movie(604)

        else:
            tmdb = AsyncTmdbClient(
                api_key="tmdb-test-key", base_url=base_url, http_client=httpx.AsyncClient()
            )

            def work() -> Any:
                assert isinstance(tmdb, AsyncTmdbClient)
                return anyio.run(tmdb.get_movie, 604)

        status, answer = in_forked_child(work)
        requests = fake.stats().total_requests
    assert status == "error"
    assert answer.startswith(ConfigurationError.__name__)
    assert "http_client" in answer
    assert "post_fork" in answer  # what to do
    assert requests == (1 if twin == "sync" else 0)  # the child sent nothing
