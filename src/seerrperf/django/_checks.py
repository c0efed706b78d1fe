"""System checks (``manage.py check``): ``SEERRPERF`` valid, database timeouts set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from seerrperf._errors import ConfigurationError

from ._config import SETTING, DjangoConfig

__all__ = ["check_database_timeouts", "check_setting", "timeout_warnings"]


def check_setting(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``seerrperf.E001``: ``SEERRPERF`` is not valid."""
    try:
        DjangoConfig.from_setting(getattr(settings, SETTING, None))
    except ConfigurationError as exc:
        return [Error(str(exc), id="seerrperf.E001")]
    return []


def _has_statement_timeout(options: dict[str, Any]) -> bool:
    return "statement_timeout" in str(options.get("options", ""))


def check_database_timeouts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``seerrperf.W001``/``W002``: a PostgreSQL database without a connect or statement timeout.

    Without ``connect_timeout`` libpq waits for the operating system's TCP
    timeout (minutes) when the server is unreachable; without a
    ``statement_timeout`` a stuck query holds its worker for ever.
    ``seerrperf.django.database_options()`` sets both.
    """
    return timeout_warnings(getattr(settings, "DATABASES", {}))


def timeout_warnings(databases: Mapping[str, Mapping[str, Any]]) -> list[CheckMessage]:
    """The warnings of :func:`check_database_timeouts` for a ``DATABASES`` dict."""
    found: list[CheckMessage] = []
    for alias, database in databases.items():
        if "postgresql" not in str(database.get("ENGINE", "")):
            continue
        options = database.get("OPTIONS") or {}
        hint = "OPTIONS = seerrperf.django.database_options() sets it"
        if not options.get("connect_timeout"):
            found.append(
                Warning(
                    f"DATABASES[{alias!r}] has no connect_timeout: an unreachable server "
                    "holds each connection attempt for the OS's TCP timeout",
                    hint=hint,
                    id="seerrperf.W001",
                )
            )
        if not _has_statement_timeout(options):
            found.append(
                Warning(
                    f"DATABASES[{alias!r}] has no statement_timeout: a stuck query holds "
                    "its worker for ever",
                    hint=hint + " (or set it on the role: ALTER ROLE ... SET statement_timeout)",
                    id="seerrperf.W002",
                )
            )
    return found
