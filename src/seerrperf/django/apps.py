"""The app for ``INSTALLED_APPS``: ``"seerrperf.django"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core import checks

if TYPE_CHECKING:  # Django ships no type hints: type checkers see a typed stand-in

    class AppConfig:
        """``django.apps.AppConfig``."""

else:
    from django.apps import AppConfig

__all__ = ["SeerrperfConfig"]


class SeerrperfConfig(AppConfig):
    """Checks ``settings.SEERRPERF`` at startup and registers the system checks.

    ``ready()`` opens nothing: the TMDB client is made in each process on
    first use (after gunicorn's fork, ``--preload`` or not), and Django's
    own pool is opened by Django in each worker. It wraps the checkout check
    of Django's pools (``guard_pool``), which creates the pool objects
    without connecting.
    """

    name: str = "seerrperf.django"
    label: str = "seerrperf"
    verbose_name: str = "seerrperf"
    default: bool = True

    def ready(self) -> None:
        from django.db import connections

        from ._checks import check_database_timeouts, check_setting
        from ._health import guard_pool
        from ._state import config

        checks.register(check_setting, checks.Tags.compatibility)
        checks.register(check_database_timeouts, checks.Tags.database)
        config()  # a bad SEERRPERF fails the start, naming the key
        for alias in connections:
            wrapper = connections[alias]
            pool = getattr(wrapper, "pool", None) if wrapper.vendor == "postgresql" else None
            if pool is not None:
                guard_pool(pool)
