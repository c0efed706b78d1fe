"""The app's configuration, read from the environment by :meth:`Settings.from_env`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from seerrperf import ConfigurationError

LockMode = Literal["local", "advisory"]

TMDB_API_URL = "https://api.themoviedb.org/3"
TMDB_IMAGE_URL = "https://image.tmdb.org/t/p"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """How to build the app.

    Attributes:
        database_url: PostgreSQL DSN; ``None`` starts an embedded server.
        tmdb_api_key: TMDB v3 API key.
        tmdb_access_token: TMDB v4 read access token; with neither credential
            the app starts a :class:`~seerrperf.testing.FakeTmdb`.
        tmdb_base_url: TMDB API root.
        tmdb_image_base_url: Where the image proxy fetches from.
        admin_token: Secret for the ``X-Admin-Token`` header of the admin
            routes; ``None`` disables those routes.
        lock_mode: ``"local"`` (:class:`~seerrperf.AsyncLock`, one process) or
            ``"advisory"`` (:class:`~seerrperf.AsyncPgAdvisoryLock`, any number).
        naive: Build the app without seerrperf's patterns, for comparison.
        movie_limit: Active movie requests a new user may have.
        series_limit: Active series requests a new user may have.
        redis_url: Redis or Valkey URL; when set, every worker shares one
            cache tier, one TMDB rate limit and its invalidations
            (``docs/scale-out.md``). ``None``: each worker on its own.
    """

    database_url: str | None = field(default=None, repr=False)
    tmdb_api_key: str | None = field(default=None, repr=False)
    tmdb_access_token: str | None = field(default=None, repr=False)
    tmdb_base_url: str = TMDB_API_URL
    tmdb_image_base_url: str = TMDB_IMAGE_URL
    admin_token: str | None = field(default=None, repr=False)
    lock_mode: LockMode = "local"
    naive: bool = False
    movie_limit: int = 10
    series_limit: int = 5
    redis_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.lock_mode not in ("local", "advisory"):
            raise ConfigurationError(
                f"lock_mode must be 'local' or 'advisory', got {self.lock_mode!r}"
            )
        if self.tmdb_api_key and self.tmdb_access_token:
            raise ConfigurationError("set only one of tmdb_api_key and tmdb_access_token")
        for name in ("movie_limit", "series_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")

    @property
    def uses_fake_tmdb(self) -> bool:
        """No TMDB credential is configured: the app brings its own FakeTmdb."""
        return not (self.tmdb_api_key or self.tmdb_access_token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from environment variables.

        ``DATABASE_URL``, ``TMDB_API_KEY``, ``TMDB_ACCESS_TOKEN``,
        ``TMDB_BASE_URL``, ``TMDB_IMAGE_BASE_URL``, ``ADMIN_TOKEN``,
        ``MEDIA_APP_LOCK`` (``local``/``advisory``), ``MEDIA_APP_NAIVE``
        (``1``/``0``), ``MEDIA_APP_MOVIE_LIMIT``, ``MEDIA_APP_SERIES_LIMIT``,
        ``REDIS_URL``.
        Unset or empty variables keep the defaults.

        Args:
            environ: The variables; ``os.environ`` when ``None``.

        Returns:
            The settings.

        Raises:
            ConfigurationError: A variable has a value that cannot be used.
        """
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        naive = env.get("MEDIA_APP_NAIVE", "").strip().lower()
        if naive not in _TRUE | _FALSE:
            raise ConfigurationError(f"MEDIA_APP_NAIVE must be 1 or 0, got {naive!r}")
        limits: dict[str, int] = {}
        for name, var in (
            ("movie_limit", "MEDIA_APP_MOVIE_LIMIT"),
            ("series_limit", "MEDIA_APP_SERIES_LIMIT"),
        ):
            raw = text(var)
            if raw is not None:
                if not raw.isdigit():
                    raise ConfigurationError(f"{var} must be a whole number, got {raw!r}")
                limits[name] = int(raw)
        lock = text("MEDIA_APP_LOCK") or "local"
        if lock not in ("local", "advisory"):
            raise ConfigurationError(f"MEDIA_APP_LOCK must be local or advisory, got {lock!r}")
        return cls(
            database_url=text("DATABASE_URL"),
            tmdb_api_key=text("TMDB_API_KEY"),
            tmdb_access_token=text("TMDB_ACCESS_TOKEN"),
            tmdb_base_url=text("TMDB_BASE_URL") or TMDB_API_URL,
            tmdb_image_base_url=text("TMDB_IMAGE_BASE_URL") or TMDB_IMAGE_URL,
            admin_token=text("ADMIN_TOKEN"),
            lock_mode="advisory" if lock == "advisory" else "local",
            naive=naive in _TRUE,
            redis_url=text("REDIS_URL"),
            **limits,
        )
