"""``path("health/", include("seerrperf.django.urls"))``: ``live/`` and ``ready/``.

The URL names are ``seerrperf:live`` and ``seerrperf:ready``.
"""

from __future__ import annotations

from typing import Any

from django.urls import path

from ._health import live, ready

app_name: str = "seerrperf"

urlpatterns: list[Any] = [
    path("live", live, name="live"),
    path("ready", ready, name="ready"),
]
