"""Reading an exposition the way Prometheus does, and linting it with promtool."""

from __future__ import annotations

import subprocess

from prometheus_client.parser import text_string_to_metric_families

from tests._support import require_program

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """``{(sample name, sorted labels): value}`` of a text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def family_types(text: str) -> dict[str, str]:
    """``{family name: type}``; counters are named with their ``_total``."""
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(text)
    }


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """Run ``promtool check metrics`` on ``text`` (Debian's ``prometheus`` package)."""
    promtool = require_program("promtool", "prometheus")
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
