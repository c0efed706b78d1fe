"""The TMDB subsystem, in layers that each decide one thing.

- ``policy``: pure rules -- TTL tiers, input checks, retry timing, peer text,
  image URLs.
- ``endpoints``: each endpoint's path, parameters and TTL tier from checked
  arguments (pure).
- ``body``: a response body within limits -- bounded decoding, bounded JSON (pure).
- ``transport``: one GET under one deadline -- credentials, the client-wide
  throttle (start rate and 429 pause), retries, error mapping, fork safety;
  its decisions are pure, the sync and async transports only do the I/O.
- ``client``: cache orchestration (keys, the 404 marker, stale serving) and
  the endpoint methods, written once in :class:`BaseTmdbClient` for
  :class:`TmdbClient` (sync) and :class:`AsyncTmdbClient`.
"""

from __future__ import annotations

from .client import AsyncTmdbClient, BaseTmdbClient, TmdbClient, TmdbStats
from .policy import TtlPolicy, image_url

__all__ = ["AsyncTmdbClient", "BaseTmdbClient", "TmdbClient", "TmdbStats", "TtlPolicy", "image_url"]
