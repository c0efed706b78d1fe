"""gunicorn settings for the gunicorn tests: open the pool in each worker, after the fork."""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    from tests.pg import _wsgi_app

    _wsgi_app.open_in_worker()


def worker_exit(server: Any, worker: Any) -> None:
    from tests.pg import _wsgi_app

    _wsgi_app.pool.close()
