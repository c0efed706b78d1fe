"""The settings of a web integration, checked once, for every framework.

FastAPI takes them as arguments of ``Seerrperf(...)``; the Django and Flask
integrations are meant to read the same fields from ``SEERRPERF = {...}``
and ``SEERRPERF_*`` keys (:meth:`IntegrationConfig.from_mapping`). Pure: it
builds nothing. The objects (pool, TMDB client, locks) are made from it per
process, after a fork, by each integration; :meth:`pool_arguments` and
:meth:`tmdb_arguments` are what it hands to the factories, sync or async.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from seerrperf import _validate
from seerrperf._cache import CacheManager, NamedCache
from seerrperf._errors import ConfigurationError
from seerrperf._pg import PoolSettings
from seerrperf._tmdb import TtlPolicy

from .limits import MAX_BODY_LIMIT

if TYPE_CHECKING:
    from seerrperf._redis.backend import RedisBackend

__all__ = [
    "CACHE_PRESETS",
    "DEFAULT_MAX_BODY_SIZE",
    "ENVIRONMENT",
    "LOCK_KINDS",
    "TMDB_OPTIONS",
    "CachePreset",
    "IntegrationConfig",
    "LockKind",
    "pool_value",
    "ttl_policy_value",
]

DEFAULT_MAX_BODY_SIZE: Final = 1_048_576
"""1 MiB: far above any JSON body these apps take, far below what hurts."""

MAX_HEALTH_TIMEOUT: Final = 60.0

DEFAULT_MAX_RPS: Final = 50
"""The TMDB clients' own default ``max_rps`` (Seerr's)."""

REDIS_SCHEMES: Final = ("redis", "rediss", "unix")

TMDB_OPTIONS: Final = frozenset(
    {"timeout", "max_retries", "max_rps", "max_retry_after", "max_body_bytes", "language", "region"}
)
"""TMDB client arguments ``tmdb_options`` may set; the rest have fields of their own."""

ENVIRONMENT: Final = {
    "DATABASE_URL": "database_url",
    "TMDB_API_TOKEN": "tmdb_access_token",
    "TMDB_API_KEY": "tmdb_api_key",
    "TMDB_BASE_URL": "tmdb_base_url",
    "REDIS_URL": "redis_url",
}
"""The environment variables :meth:`IntegrationConfig.from_env` reads, and their fields."""

CachePreset = Literal["empty", "seerr"]
"""``"empty"``, or ``"seerr"`` for Seerr's ten caches with Seerr's TTLs."""
LockKind = Literal["advisory", "local"]
"""``"advisory"`` (PostgreSQL: every process and host) or ``"local"`` (one process's threads)."""
CACHE_PRESETS: Final = frozenset({"empty", "seerr"})
LOCK_KINDS: Final = frozenset({"advisory", "local"})
_TTL_POLICIES: Final[Mapping[str, Callable[[], TtlPolicy]]] = {
    "by_volatility": TtlPolicy.by_volatility,
    "seerr": TtlPolicy.seerr,
}
_POOL_FIELDS: Final = frozenset(PoolSettings.__dataclass_fields__)


def ttl_policy_value(value: object) -> object:
    """A framework setting's TTL policy: ``"by_volatility"``, ``"seerr"`` or a ``TtlPolicy``.

    Raises:
        ConfigurationError: an unknown policy name (other types are
            :class:`IntegrationConfig`'s to refuse).
    """
    if isinstance(value, str):
        _validate.choice("ttl_policy", value, _TTL_POLICIES)
        return _TTL_POLICIES[value]()
    return value


def pool_value(value: object, *, source: str) -> object:
    """A framework setting's pool: a ``PoolSettings``, or a dict of its fields (keys in any case).

    Raises:
        ConfigurationError: the dict names no field (``source`` names the
            setting in the message) or a value is invalid.
    """
    if not isinstance(value, Mapping):
        return value  # IntegrationConfig says what it must be
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = key.lower() if isinstance(key, str) else None
        if name not in _POOL_FIELDS:
            raise ConfigurationError(
                f"{source} has an unknown key {_validate.shown(key)}; "
                f"valid keys are: {', '.join(sorted(_POOL_FIELDS))}"
            )
        fields[name] = item
    return PoolSettings(**fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationConfig:
    """What a web integration builds and how it answers, validated on construction.

    Attributes:
        database_url: libpq DSN or URI; ``None`` uses ``$DATABASE_URL`` when
            the pool is made (as :func:`~seerrperf.async_pool_factory` does).
        pool: The pool's :class:`~seerrperf.PoolSettings`.
        pool_kwargs: Extra connection parameters for ``psycopg.connect``
            (e.g. ``{"autocommit": True}``).
        pool_name: The pool's name in logs and statistics.
        tmdb_api_key: A TMDB v3 API key.
        tmdb_access_token: A TMDB v4 read access token (preferred); with
            neither credential there is no TMDB client.
        tmdb_base_url: The TMDB API root; ``None`` for TMDB's own.
        ttl_policy: TTLs per TMDB endpoint; ``None`` for the client's default.
        tmdb_cache_size: Entries of the ``tmdb`` cache when it is created;
            ``None`` accepts an existing cache's size (or 10,000).
        tmdb_options: Further TMDB client arguments, among
            :data:`TMDB_OPTIONS` (``timeout``, ``max_rps``, ``language``...).
        lock_namespace: Mixed into every advisory lock id, so apps sharing a
            database do not block each other.
        health_timeout: Seconds readiness may take in all (checkout plus query).
        max_body_size: Largest request body accepted, in bytes; ``None``
            for no limit (not recommended).
        redis_url: A Redis or Valkey URL (``redis://``, ``rediss://``,
            ``unix://``; ``$REDIS_URL``). When set, each process makes one
            :class:`~seerrperf.RedisBackend` (namespace ``lock_namespace``):
            the caches gain the shared tier, the TMDB client's ``max_rps``
            becomes the fleet's (``backend.rate_limiter("tmdb", ...)``) and
            readiness reports Redis as a non-critical component. ``None``:
            every process on its own.

    Raises:
        ConfigurationError: a field has a wrong type or value, both TMDB
            credentials are given, or ``tmdb_options`` names an unknown
            argument. No message shows a credential or the DSN.
    """

    database_url: str | None = field(default=None, repr=False)
    pool: PoolSettings = field(default_factory=PoolSettings)
    pool_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    pool_name: str | None = None
    tmdb_api_key: str | None = field(default=None, repr=False)
    tmdb_access_token: str | None = field(default=None, repr=False)
    tmdb_base_url: str | None = None
    ttl_policy: TtlPolicy | None = None
    tmdb_cache_size: int | None = None
    tmdb_options: Mapping[str, Any] = field(default_factory=dict)
    lock_namespace: str = "seerrperf"
    health_timeout: float = 2.0
    max_body_size: int | None = DEFAULT_MAX_BODY_SIZE
    redis_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.database_url is not None:
            _validate.instance("database_url", self.database_url, str, "a str")
            if not self.database_url.strip():
                raise ConfigurationError("database_url must not be empty")
        _validate.instance("pool", self.pool, PoolSettings, "a PoolSettings")
        _validate.instance("pool_kwargs", self.pool_kwargs, Mapping, "a mapping")
        if self.pool_name is not None:
            _validate.name("pool_name", self.pool_name)
        _validate.secret("tmdb_api_key", self.tmdb_api_key, allow_none=True)
        _validate.secret("tmdb_access_token", self.tmdb_access_token, allow_none=True)
        if self.tmdb_api_key is not None and self.tmdb_access_token is not None:
            raise ConfigurationError("set only one of tmdb_api_key and tmdb_access_token")
        if self.tmdb_base_url is not None:
            _validate.name("tmdb_base_url", self.tmdb_base_url)
        if self.ttl_policy is not None:
            _validate.instance("ttl_policy", self.ttl_policy, TtlPolicy, "a TtlPolicy")
        if self.tmdb_cache_size is not None:
            _validate.count("tmdb_cache_size", self.tmdb_cache_size, minimum=1)
        _validate.instance("tmdb_options", self.tmdb_options, Mapping, "a mapping")
        unknown = sorted(str(name) for name in self.tmdb_options if name not in TMDB_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"tmdb_options may not set {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(TMDB_OPTIONS))}"
            )
        _validate.name("lock_namespace", self.lock_namespace)
        _validate.duration(
            "health_timeout", self.health_timeout, allow_zero=False, maximum=MAX_HEALTH_TIMEOUT
        )
        if self.max_body_size is not None:
            _validate.count("max_body_size", self.max_body_size, maximum=MAX_BODY_LIMIT)
        if self.redis_url is not None:
            _validate.secret("redis_url", self.redis_url)
            scheme = self.redis_url.partition("://")[0].lower()
            if scheme not in REDIS_SCHEMES:
                raise ConfigurationError(
                    "redis_url must start with redis://, rediss:// or unix:// "
                    "(the URL is not shown: it may hold a password)"
                )

    # -- building one ------------------------------------------------------------------

    def replace(self, **changes: Any) -> IntegrationConfig:
        """Return a copy with some fields changed (and checked again).

        Raises:
            ConfigurationError: a change names no field, or a value is invalid.
        """
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s): {', '.join(unknown)}; "
                f"valid settings are: {', '.join(sorted(_FIELDS))}"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, source: str = "settings"
    ) -> IntegrationConfig:
        """Build one from a mapping keyed by field names, in any case.

        For framework configuration: ``SEERRPERF = {"TMDB_ACCESS_TOKEN": ...}``
        in Django, ``SEERRPERF_*`` keys (prefix removed) in Flask.

        Args:
            values: Field names (``DATABASE_URL`` or ``database_url``) to values.
            source: How messages name the mapping, e.g. ``"SEERRPERF"``.

        Raises:
            ConfigurationError: a key names no field, two keys name the same
                field, or a value is invalid.
        """
        fields: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).lower()
            if name not in _FIELDS:
                raise ConfigurationError(
                    f"{source} has an unknown key {_validate.shown(key)}; "
                    f"valid keys are: {', '.join(sorted(n.upper() for n in _FIELDS))}"
                )
            if name in fields:
                raise ConfigurationError(f"{source} sets {name.upper()} twice")
            fields[name] = value
        return cls(**fields)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **fields: Any) -> IntegrationConfig:
        """Build one from the environment, with explicit ``fields`` winning.

        Reads ``DATABASE_URL``, ``TMDB_API_TOKEN`` (a v4 read access token),
        ``TMDB_API_KEY`` (a v3 key), ``TMDB_BASE_URL`` and ``REDIS_URL``; unset or empty
        variables are skipped. A credential given in ``fields`` replaces both
        variables, so setting one kind in code never clashes with the other
        in the environment.

        Args:
            environ: The variables; ``os.environ`` when ``None``.
            **fields: Fields set in code.

        Raises:
            ConfigurationError: as the constructor.
        """
        env = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        for variable, name in ENVIRONMENT.items():
            value = env.get(variable, "").strip()
            if value:
                found[name] = value
        if {"tmdb_api_key", "tmdb_access_token"} & fields.keys():
            found.pop("tmdb_api_key", None)
            found.pop("tmdb_access_token", None)
        return cls().replace(**{**found, **fields})

    # -- what the integrations hand to the factories -----------------------------------

    @property
    def has_tmdb(self) -> bool:
        """Whether a TMDB credential is set (and so a TMDB client is made)."""
        return self.tmdb_api_key is not None or self.tmdb_access_token is not None

    def pool_arguments(self) -> dict[str, Any]:
        """Keyword arguments for :func:`~seerrperf.pool_factory` or its async twin."""
        return {
            "dsn": self.database_url,
            "settings": self.pool,
            "kwargs": dict(self.pool_kwargs),
            "name": self.pool_name,
        }

    def redis_backend(self) -> RedisBackend | None:
        """A new :class:`~seerrperf.RedisBackend` for :attr:`redis_url` (``None`` without one).

        One per process: the integrations make it where each worker makes its
        pool. Nothing connects until it is used.

        Raises:
            ConfigurationError: the ``redis`` extra is not installed, or the
                URL is invalid.
        """
        if self.redis_url is None:
            return None
        from seerrperf._redis.backend import RedisBackend

        return RedisBackend.from_url(self.redis_url, namespace=self.lock_namespace)

    def tmdb_cache(self, caches: CacheManager) -> NamedCache:
        """The ``tmdb`` cache of ``caches``, created with :attr:`tmdb_cache_size` if new."""
        return caches.get_cache("tmdb", maxsize=self.tmdb_cache_size)

    def tmdb_arguments(self, caches: CacheManager) -> dict[str, Any]:
        """Keyword arguments for a TMDB client (sync or async) caching in ``caches``.

        With a shared tier (``caches.shared``) the client's ``max_rps`` (50
        unless ``tmdb_options`` says otherwise) is the fleet's: the arguments
        carry ``rate_limiter=caches.shared.rate_limiter("tmdb", ...)``.

        Raises:
            ConfigurationError: no TMDB credential is set.
        """
        if not self.has_tmdb:
            raise ConfigurationError(
                "no TMDB credential is set: give tmdb_access_token (TMDB_API_TOKEN) "
                "or tmdb_api_key (TMDB_API_KEY)"
            )
        arguments: dict[str, Any] = {
            "api_key": self.tmdb_api_key,
            "access_token": self.tmdb_access_token,
            "cache": self.tmdb_cache(caches),
            "ttl_policy": self.ttl_policy,
            **self.tmdb_options,
        }
        if self.tmdb_base_url is not None:
            arguments["base_url"] = self.tmdb_base_url
        max_rps = self.tmdb_options.get("max_rps", DEFAULT_MAX_RPS)
        if caches.shared is not None and max_rps is not None:
            arguments["rate_limiter"] = caches.shared.rate_limiter("tmdb", max_rps=max_rps)
        return arguments


_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(IntegrationConfig))
