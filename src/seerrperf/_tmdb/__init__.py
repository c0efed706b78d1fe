"""The TMDB subsystem, in layers that each decide one thing.

- ``policy``: pure rules -- TTL tiers, input checks, retry timing, image URLs.
- ``endpoints``: each endpoint's path and parameters from checked arguments (pure).
- ``transport``: one GET -- credentials, the client-wide throttle (start rate
  and 429 pause), retries, error mapping, parsing, secret masking; its
  decisions are pure, the async transport only awaits.
- ``client``: cache orchestration (keys, the 404 cache, stale serving) and
  the endpoint methods of :class:`TmdbClient`.
"""

from __future__ import annotations

from .client import TmdbClient, TmdbStats
from .policy import TtlPolicy, image_url

__all__ = ["TmdbClient", "TmdbStats", "TtlPolicy", "image_url"]
