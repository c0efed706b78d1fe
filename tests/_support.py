"""Scaffolding shared by every test folder (fixtures live in ``conftest.py``)."""

from __future__ import annotations

SENTINEL = "s3cr3t-sentinel"
"""A secret that must never appear in a message, a log line, a repr or a cache key."""


REQUIRE_SERVICES_ENV = "SEERRPERF_REQUIRE_SERVICES"
"""Set to 1 (as ``.ci/run`` does) to fail, not skip, when a required program is missing."""


def require_program(name: str, debian_package: str) -> str:
    """Return the path of ``name`` (PgBouncer, promtool, gunicorn...), for tests that run it.

    On a developer machine without it the test is skipped with a hint; under
    ``SEERRPERF_REQUIRE_SERVICES=1`` (CI) the test fails instead, so a missing
    service can never pass as a silent skip.
    """
    import os
    import shutil

    import pytest

    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found:
        return found
    message = f"{name} is not installed (Debian package {debian_package!r}: apt-get install it)"
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pytest.skip raises
