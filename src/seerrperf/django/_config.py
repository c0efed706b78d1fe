"""The ``SEERRPERF = {...}`` Django setting, checked once: pure, no Django import.

All keys optional (defaults in brackets), in any case:

- ``TMDB_ACCESS_TOKEN``: TMDB v4 read access token (preferred), or
  ``TMDB_API_KEY``: a v3 API key; one at most [no TMDB client].
- ``TMDB_BASE_URL``, ``TTL_POLICY`` (``"by_volatility"``, ``"seerr"`` or a
  ``TtlPolicy``), ``TMDB_CACHE_SIZE``, ``TMDB_OPTIONS``: as for every integration.
- ``CACHE_PRESET``: ``"empty"`` or ``"seerr"`` (Seerr's ten caches) [empty].
- ``LOCK``: ``"advisory"`` (PostgreSQL, on Django's connection: every process
  and host) or ``"local"`` (the threads of one process) [advisory].
- ``LOCK_NAMESPACE``: mixed into every advisory lock id [seerrperf].
- ``DATABASE``: the ``DATABASES`` alias for readiness and the lock [default].
- ``HEALTH_TIMEOUT``: seconds readiness may take, checkout plus query [2.0].
- ``MAX_BODY_SIZE``: largest request body in bytes the middleware accepts,
  ``None`` for no limit [1 MiB].

The database itself is Django's: ``DATABASE_URL``, ``POOL``, ``POOL_KWARGS``
and ``POOL_NAME`` are refused with a pointer to
:func:`seerrperf.django.database_options`. Every other key is refused too,
so a misspelt one cannot be silently ignored; no message shows a credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._web import IntegrationConfig
from seerrperf._web.config import (
    CACHE_PRESETS,
    LOCK_KINDS,
    CachePreset,
    LockKind,
    ttl_policy_value,
)

__all__ = ["SETTING", "DjangoConfig"]

SETTING: Final = "SEERRPERF"
"""The name of the Django setting :class:`DjangoConfig` reads."""

_OWN: Final = frozenset({"cache_preset", "lock", "database"})
# Django's DATABASES owns these; a value here would be silently unused.
_DJANGOS: Final = frozenset({"database_url", "pool", "pool_kwargs", "pool_name"})
_SHARED: Final = frozenset(IntegrationConfig.__dataclass_fields__) - _DJANGOS


@dataclass(frozen=True, slots=True)
class DjangoConfig:
    """What ``settings.SEERRPERF`` says, checked.

    Attributes:
        integration: The settings every web integration shares.
        cache_preset: ``"empty"`` or ``"seerr"``.
        lock: Which lock :func:`seerrperf.django.lock` gives.
        database: The ``DATABASES`` alias readiness checks and the lock uses.
    """

    integration: IntegrationConfig
    cache_preset: CachePreset = "empty"
    lock: LockKind = "advisory"
    database: str = "default"

    @classmethod
    def from_setting(cls, value: object) -> DjangoConfig:
        """Read the ``SEERRPERF`` setting (``None`` when it is not set).

        Raises:
            ConfigurationError: it is not a dict, a key is unknown or a value
                is bad; the message starts with ``SEERRPERF[KEY]``.
        """
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"{SETTING} must be a dict of settings, got {type(value).__name__}"
            )
        shared: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).lower()
            where = f"{SETTING}[{str(key).upper()!r}]"
            if name in _DJANGOS:
                raise ConfigurationError(
                    f"{where}: Django's DATABASES configures the database; put "
                    "seerrperf.django.database_options(...) in DATABASES[...]['OPTIONS']"
                )
            if name not in _SHARED and name not in _OWN:
                valid = ", ".join(sorted(n.upper() for n in _SHARED | _OWN))
                raise ConfigurationError(
                    f"{SETTING} has an unknown key {_validate.shown(key)}; valid keys are: {valid}"
                )
            if name in own or name in shared:
                raise ConfigurationError(f"{SETTING} sets {name.upper()} twice")
            try:
                if name == "database":
                    own[name] = _validate.name(name, item)
                elif name in _OWN:
                    allowed = CACHE_PRESETS if name == "cache_preset" else LOCK_KINDS
                    own[name] = _validate.choice(name, item, allowed)
                else:
                    converted = ttl_policy_value(item) if name == "ttl_policy" else item
                    IntegrationConfig().replace(**{name: converted})  # this key alone
                    shared[name] = converted
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
        try:
            integration = IntegrationConfig(**shared)
        except ConfigurationError as exc:  # a rule about two keys together
            raise ConfigurationError(f"{SETTING}: {exc}") from None
        return cls(integration, **own)
