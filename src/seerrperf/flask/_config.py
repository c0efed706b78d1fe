"""The ``SEERRPERF_*`` keys of a Flask app's config, checked once: pure, no Flask import.

All optional (defaults in brackets):

- ``SEERRPERF_DATABASE_URL``: libpq DSN or URI [``$DATABASE_URL``].
- ``SEERRPERF_POOL``: a ``PoolSettings``, or a dict of its fields [``PoolSettings()``].
- ``SEERRPERF_POOL_KWARGS``: extra ``psycopg.connect`` parameters [``{}``].
- ``SEERRPERF_POOL_NAME``: the pool's name in logs and statistics [psycopg_pool's].
- ``SEERRPERF_TMDB_ACCESS_TOKEN``: TMDB v4 read access token (preferred), or
  ``SEERRPERF_TMDB_API_KEY``: a v3 API key; one at most [no TMDB client].
- ``SEERRPERF_TMDB_BASE_URL``: the TMDB API root [TMDB's own].
- ``SEERRPERF_TTL_POLICY``: ``"by_volatility"``, ``"seerr"`` or a ``TtlPolicy``
  [by_volatility].
- ``SEERRPERF_TMDB_CACHE_SIZE``: entries of the ``tmdb`` cache [10,000].
- ``SEERRPERF_TMDB_OPTIONS``: ``timeout``, ``max_retries``, ``max_rps``,
  ``max_retry_after``, ``language``, ``region`` [``{}``].
- ``SEERRPERF_CACHE_PRESET``: ``"empty"`` or ``"seerr"`` (Seerr's ten caches) [empty].
- ``SEERRPERF_LOCK``: ``"advisory"`` (PostgreSQL: every process and host) or
  ``"local"`` (the threads of one process) [advisory].
- ``SEERRPERF_LOCK_NAMESPACE``: mixed into every advisory lock id [seerrperf].
- ``SEERRPERF_HEALTH_TIMEOUT``: seconds readiness may take, checkout plus query [2.0].
- ``SEERRPERF_MAX_BODY_SIZE``: largest request body in bytes, ``None`` for no
  limit [``MAX_CONTENT_LENGTH``, else 1 MiB].
- ``SEERRPERF_RELATIVE_REDIRECTS``: send redirects to the request's own host
  as relative references [``True``].

Every other ``SEERRPERF_`` key is refused, so a misspelt one cannot be
silently ignored. Each value is checked on its own first, so a message names
the key it is about; no message shows a credential or the DSN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._web import IntegrationConfig
from seerrperf._web.config import (
    CACHE_PRESETS,
    DEFAULT_MAX_BODY_SIZE,
    LOCK_KINDS,
    CachePreset,
    LockKind,
    pool_value,
    ttl_policy_value,
)

__all__ = ["PREFIX", "FlaskConfig"]

PREFIX: Final = "SEERRPERF_"
"""The prefix of the ``app.config`` keys :meth:`Seerrperf.init_app` reads."""

# Keys of this integration's own; the rest are IntegrationConfig fields.
_OWN: Final = frozenset({"cache_preset", "lock", "relative_redirects"})
_SHARED: Final = frozenset(IntegrationConfig.__dataclass_fields__)


def _key(name: str) -> str:
    return PREFIX + name.upper()


_CONVERT: Final[Mapping[str, Callable[[object], object]]] = {
    "pool": lambda value: pool_value(value, source=_key("pool")),
    "ttl_policy": ttl_policy_value,
}


@dataclass(frozen=True, slots=True)
class FlaskConfig:
    """What the ``SEERRPERF_*`` keys of one app say, checked.

    Attributes:
        integration: The settings every web integration shares.
        cache_preset: ``"empty"`` or ``"seerr"``.
        lock: Which lock :attr:`Seerrperf.lock` is.
        relative_redirects: Rewrite same-origin ``Location`` headers.
    """

    integration: IntegrationConfig
    cache_preset: CachePreset = "empty"
    lock: LockKind = "advisory"
    relative_redirects: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FlaskConfig:
        """Read the ``SEERRPERF_*`` keys of a Flask config (and ``MAX_CONTENT_LENGTH``).

        Raises:
            ConfigurationError: an unknown ``SEERRPERF_`` key or a bad value;
                the message starts with the key it is about.
        """
        shared: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, value in config.items():
            if not isinstance(key, str) or not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name not in _SHARED and name not in _OWN:
                valid = sorted(_key(n) for n in _SHARED | _OWN)
                raise ConfigurationError(
                    f"unknown config key {_validate.shown(key)}; valid keys are: {', '.join(valid)}"
                )
            try:
                if name == "relative_redirects":
                    own[name] = _validate.flag(name, value)
                    continue
                if name in _OWN:
                    allowed = CACHE_PRESETS if name == "cache_preset" else LOCK_KINDS
                    own[name] = _validate.choice(name, value, allowed)
                    continue
                converted = _CONVERT[name](value) if name in _CONVERT else value
                IntegrationConfig().replace(**{name: converted})  # this key alone
            except ConfigurationError as exc:
                raise ConfigurationError(f"{key}: {exc}") from None
            shared[name] = converted
        if "max_body_size" not in shared:
            shared["max_body_size"] = _max_content_length(config.get("MAX_CONTENT_LENGTH"))
        elif config.get("MAX_CONTENT_LENGTH") not in (None, shared["max_body_size"]):
            raise ConfigurationError(
                f"{_key('max_body_size')} ({shared['max_body_size']}) and MAX_CONTENT_LENGTH "
                f"({config['MAX_CONTENT_LENGTH']}) disagree: set one of them"
            )
        try:
            integration = IntegrationConfig(**shared)
        except ConfigurationError as exc:  # a rule about two keys together
            raise ConfigurationError(f"{PREFIX}*: {exc}") from None
        return cls(integration, **own)


def _max_content_length(value: object) -> int:
    """The limit when only Flask's own key (or neither) sets one."""
    if value is None:
        return DEFAULT_MAX_BODY_SIZE
    return _validate.count("MAX_CONTENT_LENGTH", value)
