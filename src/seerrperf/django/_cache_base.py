"""Django's ``BaseCache`` as type checkers see it: Django ships no type hints.

At run time this is Django's own class and constant. For mypy and pyright it
is the typed outline of what ``SeerrperfCache`` inherits, so that the
backend's public interface has known types (``pyright --verifytypes``)
whether or not Django is installed where the types are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_TIMEOUT", "BaseCache", "on_caches_changed"]


def on_caches_changed(receiver: Callable[[], object]) -> None:
    """Call ``receiver()`` whenever Django's ``CACHES`` setting changes.

    Django sends ``setting_changed`` from ``override_settings`` (tests) and
    then makes new backend objects from the new ``CACHES``; ``receiver``
    lets the process-wide caches follow.
    """
    from django.core.signals import setting_changed  # type: ignore[import-untyped,unused-ignore]

    def changed(*, setting: str, **kwargs: Any) -> None:
        if setting == "CACHES":
            receiver()

    setting_changed.connect(changed, weak=False, dispatch_uid="seerrperf.django.cache")


if TYPE_CHECKING:
    DEFAULT_TIMEOUT: object = object()
    """Django's "no timeout given" marker: the backend's default timeout applies."""

    class BaseCache:
        """The part of ``django.core.cache.backends.base.BaseCache`` a backend inherits."""

        default_timeout: float | None
        key_prefix: str
        version: int
        key_func: Callable[..., Any]

        def __init__(self, params: Mapping[str, Any]) -> None: ...
        def make_key(self, key: Any, version: int | None = None) -> Any:
            """Django's key for ``key``: ``KEY_FUNCTION(key, KEY_PREFIX, version)``."""
            ...

        def validate_key(self, key: Any) -> None:
            """Warn (``CacheKeyWarning``) about a key memcached would refuse."""
            ...

        def make_and_validate_key(self, key: Any, version: int | None = None) -> Any:
            """:meth:`make_key`, then :meth:`validate_key`."""
            ...

        def incr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
            """Move ``key`` to version ``version + delta``; return the new version."""
            ...

        def decr_version(self, key: Any, delta: int = 1, version: int | None = None) -> int:
            """Move ``key`` to version ``version - delta``; return the new version."""
            ...

        def close(self, **kwargs: Any) -> None:
            """Called by Django at the end of each request; nothing to close here."""
            ...

        async def aclose(self, **kwargs: Any) -> None:
            """:meth:`close`, for async code."""
            ...

        def __contains__(self, key: Any) -> bool:
            """``key in cache``: :meth:`has_key`."""
            ...

else:
    from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
