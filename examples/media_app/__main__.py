"""``python -m media_app``: run the service from the environment (see settings.py).

With nothing configured it brings its own embedded PostgreSQL and FakeTmdb.
``HOST`` and ``PORT`` say where to listen (default 127.0.0.1:8000).
"""

from __future__ import annotations

import os

import uvicorn

from .app import create_app


def main() -> None:
    """Serve until interrupted."""
    uvicorn.run(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        lifespan="on",
    )


if __name__ == "__main__":
    main()
