"""Django integration: an app for ``INSTALLED_APPS`` configured from ``SEERRPERF = {...}``.

Needs Django (``pip install "seerrperf[django]"``); the rest of seerrperf
never imports this package.
"""

from __future__ import annotations

try:
    import django as _django  # noqa: F401 - the guard below explains a missing Django
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError('seerrperf.django needs Django: pip install "seerrperf[django]"') from None

__all__: list[str] = []
