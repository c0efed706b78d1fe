"""Keep secrets out of messages, reprs and logs.

Pure helpers shared by the pool, health and HTTP modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg.conninfo

__all__ = ["dsn_secrets", "redact"]

_MASK = "***"
# URI userinfo ("scheme://user:secret@") and key/value ("password=secret").
_URI_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@/?#\s]*)(?=@)", re.I
)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """Return the secret values found in ``dsn`` (its password, if any)."""
    found: list[str] = []
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        params = {}
    password = params.get("password")
    if password:
        found.append(str(password))
    for pattern in (_URI_PASSWORD, _KV_PASSWORD):
        for match in pattern.finditer(dsn):
            value = match.group("pw").strip("'")
            if value:
                found.append(value)
    return tuple(dict.fromkeys(found))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in ``text`` with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, _MASK)
    return text
