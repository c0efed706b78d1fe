"""``database_options()``: seerrperf's pool defaults as ``DATABASES[...]["OPTIONS"]``. Pure."""

from __future__ import annotations

from typing import Any, Final

from seerrperf import _validate
from seerrperf._errors import ConfigurationError
from seerrperf._pg import PoolSettings
from seerrperf._pg.pool import _libpq_params

__all__ = ["database_options"]

# PoolSettings fields Django's pool cannot take, and what to do instead.
_NOT_FOR_DJANGO: Final = {
    "check": (
        "Django passes the pool's check itself (CONN_HEALTH_CHECKS); the seerrperf.django "
        "app narrows it to connections idle for 1 s or more"
    ),
    "check_idle": "the seerrperf.django app checks connections idle for 1 s or more",
    "grow_after": "Django's pool is psycopg_pool's own: it grows whenever a request queues",
    "query_timeout": (
        "Django's pool is psycopg_pool's own: statement_timeout is the deadline of a query"
    ),
}


def database_options(*, pool: bool = True, **overrides: Any) -> dict[str, Any]:
    """Return ``PoolSettings`` defaults as a ``DATABASES[...]["OPTIONS"]`` dict (Django 5.1+).

    ::

        DATABASES = {"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": "app", ...,
            "OPTIONS": database_options(max_size=4),
        }}

    The dict holds libpq's ``connect_timeout`` and TCP keepalives,
    ``application_name``, the server-side ``statement_timeout`` and
    ``idle_in_transaction_session_timeout`` (as ``options="-c ..."``;
    omitted with ``pgbouncer=True``, which PgBouncer would refuse), and
    ``"pool"``: the arguments of Django's ``psycopg_pool.ConnectionPool``
    (sizes, ``timeout``, ``max_idle``, ``max_lifetime``, ``max_waiting``),
    never ``check``, which Django passes itself (``PoolSettings().as_dict()``
    there raises ``TypeError: multiple values for 'check'``). The
    ``seerrperf.django`` app replaces Django's check on every checkout
    (``CONN_HEALTH_CHECKS = True``) by one on connections idle for a second
    or more, bounded by the readiness deadline. Add keys of your own
    (``sslmode``...) to the returned dict.

    Args:
        pool: ``False`` leaves out ``"pool"`` (Django's one connection per
            thread, ``CONN_MAX_AGE``), keeping the timeouts.
        **overrides: :class:`~seerrperf.PoolSettings` fields, e.g.
            ``max_size=4, statement_timeout=10.0``; not ``check``,
            ``check_idle``, ``grow_after`` or ``query_timeout``, which
            Django's pool has no place for.

    Raises:
        ConfigurationError: an unknown field, a field Django's pool cannot
            take, or an invalid value (the same rules as ``PoolSettings``).
    """
    _validate.flag("pool", pool)
    for name, why in _NOT_FOR_DJANGO.items():
        if name in overrides:
            raise ConfigurationError(f"database_options() does not take {name}: {why}")
    settings = PoolSettings().replace(**overrides)
    options = _libpq_params(settings, {}, set(overrides), {})
    if pool:
        options["pool"] = {
            "min_size": settings.min_size,
            "max_size": settings.max_size,
            "timeout": settings.timeout,
            "max_idle": settings.max_idle,
            "max_lifetime": settings.max_lifetime,
            "max_waiting": settings.max_waiting,
        }
    return options
