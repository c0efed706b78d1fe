"""``python manage.py seerrperf_health``: the readiness report; exit 0 if it passes, else 1."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser

from seerrperf import health_report
from seerrperf.django._health import check_health


class Command(BaseCommand):
    help = "Print the database readiness report (health+json); exit 0 if it passes, else 1."
    requires_system_checks: ClassVar[list[str]] = []  # a probe must not fail on a warning

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=None, help="the DATABASES alias")
        parser.add_argument("--timeout", type=float, default=None, help="seconds in all")

    def handle(self, *args: Any, **options: Any) -> None:
        report = health_report(check_health(options["database"], timeout=options["timeout"]))
        self.stdout.write(report.json())
        if report.status_code != 200:
            raise SystemExit(1)
