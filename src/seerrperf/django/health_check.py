"""A check for django-health-check (4.x): ``"seerrperf.django.health_check.Database"``.

::

    path("ht/", HealthCheckView.as_view(checks=[
        ("seerrperf.django.health_check.Database", {"alias": "default"}),
    ]))

Unlike django-health-check's own ``Database`` check it keeps the deadline on
a frozen server (``SEERRPERF["HEALTH_TIMEOUT"]``) and works on Django's pool
before the first query. Importing this module needs ``django-health-check``;
nothing else in ``seerrperf.django`` imports it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from health_check.exceptions import ServiceUnavailable

if TYPE_CHECKING:  # django-health-check ships no type hints: a typed stand-in

    class HealthCheck:
        """``health_check.base.HealthCheck``."""

else:
    from health_check.base import HealthCheck

from ._health import check_health

__all__ = ["Database"]


@dataclasses.dataclass
class Database(HealthCheck):
    """seerrperf's readiness check of one ``DATABASES`` alias, as a django-health-check check.

    Args:
        alias: The alias; ``SEERRPERF["DATABASE"]`` by default.
    """

    alias: str | None = None

    def run(self) -> None:
        """Raise ``ServiceUnavailable`` with the (password-free) reason when the check fails."""
        result = check_health(self.alias)
        if not result.healthy:
            raise ServiceUnavailable(result.error or "the database did not answer")
