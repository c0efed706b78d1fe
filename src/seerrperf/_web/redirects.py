"""Redirects that a client's ``Host`` header cannot point elsewhere.

Frameworks build absolute redirect URLs from the request's ``Host`` header
(Starlette's trailing-slash redirect and ``url_for``, werkzeug's
``strict_slashes``), so whoever sends the request chooses the host a
redirect names -- poison for any cache in front. Sent as relative
references, redirects resolve against the URL the client really used.
"""

from __future__ import annotations

import urllib.parse

__all__ = ["relative_location"]

# Characters a browser may drop or rewrite in a path (tab, newline,
# backslash...) are escaped, so a relative reference cannot become another host.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def relative_location(location: str, *, scheme: str, host: str | None) -> str:
    """Turn a ``Location`` that points at the request's own origin into a relative reference.

    Args:
        location: The header value.
        scheme: The request's scheme (``http``, ``https``).
        host: The request's ``Host`` header, if it has one.

    Returns:
        ``location`` as a path-absolute reference (``/a/b?q``) when its scheme
        and authority are the request's (compared case-insensitively);
        unchanged otherwise, e.g. a redirect to ``https`` or to another
        site. The path is re-escaped and never starts with ``//``, so the
        result cannot be read as a network-path reference to another host.
        Never raises: an unparsable value is returned as it is.
    """
    if host is None:
        return location
    try:
        parts = urllib.parse.urlsplit(location)
    except ValueError:
        return location
    if parts.scheme.lower() != scheme.lower() or parts.netloc.lower() != host.lower():
        return location
    path = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE)
    if path.startswith("//"):
        path = "/%2F" + path[2:]
    return urllib.parse.urlunsplit(("", "", path, parts.query, parts.fragment))
