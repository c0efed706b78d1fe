"""The TMDB subsystem: pure policy (TTLs, checks, retry timing), the client on top of it."""

from __future__ import annotations

from .client import TmdbClient, TmdbStats
from .policy import TtlPolicy, image_url

__all__ = ["TmdbClient", "TmdbStats", "TtlPolicy", "image_url"]
