"""What every web integration shares, framework-neutral and pure.

- :mod:`.outage`: which exceptions are dependency outages, and the 503
  answer they get (``Retry-After``, ``no-store``, RFC 9457 problem+json);
  ``no-store`` for every error response.
- :mod:`.limits`: request body limits (reading ``Content-Length`` leniently,
  counting what arrives).
- :mod:`.redirects`: redirects that a client's ``Host`` header cannot aim.
- :mod:`.config`: the settings of an integration (database, TMDB, health,
  limits) from arguments, a mapping or the environment, and the arguments
  they give the pool and the TMDB client.

``seerrperf.fastapi`` builds on these now; the Django and Flask integrations
are meant to use the same pieces, so an outage looks the same to a client
whichever framework answers.
"""

from __future__ import annotations

from .config import IntegrationConfig
from .limits import BodyCounter, declared_length
from .outage import (
    Outage,
    Problem,
    classify_outage,
    error_headers,
    outage_problem,
    server_error_problem,
    too_large_problem,
)
from .redirects import relative_location

__all__ = [
    "BodyCounter",
    "IntegrationConfig",
    "Outage",
    "Problem",
    "classify_outage",
    "declared_length",
    "error_headers",
    "outage_problem",
    "relative_location",
    "server_error_problem",
    "too_large_problem",
]
