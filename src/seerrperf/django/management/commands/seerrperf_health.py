"""``python manage.py seerrperf_health``: the readiness report; exit 0 if it passes, else 1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # Django ships no type hints: type checkers see a typed stand-in

    class BaseCommand:
        """``django.core.management.base.BaseCommand``."""

        stdout: Any

else:
    from django.core.management.base import BaseCommand

from seerrperf import health_report
from seerrperf.django._health import check_health


class Command(BaseCommand):
    """``manage.py seerrperf_health [--database ALIAS] [--timeout SECONDS]``."""

    help: str = "Print the database readiness report (health+json); exit 0 if it passes, else 1."
    requires_system_checks: ClassVar[list[str]] = []  # a probe must not fail on a warning

    def add_arguments(self, parser: Any) -> None:
        """``--database`` and ``--timeout``."""
        parser.add_argument("--database", default=None, help="the DATABASES alias")
        parser.add_argument("--timeout", type=float, default=None, help="seconds in all")

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the report; exit 1 unless it passes."""
        report = health_report(check_health(options["database"], timeout=options["timeout"]))
        self.stdout.write(report.json())
        if report.status_code != 200:
            raise SystemExit(1)
