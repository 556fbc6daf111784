"""URL helpers of browser curl: the http(s) check, credentials → Basic auth, the origin."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import BadRequest


def checked_url(url: str) -> str:
    """`url` without surrounding blanks, or a 400 unless it is an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise BadRequest(f"field 'url' is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"field 'url' must be an http or https URL, got {url!r}")
    if not parts.hostname:
        raise BadRequest(f"field 'url' has no host: {url!r}")
    return url.strip()


def split_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(URL without user:password@, its origin, an Authorization header for the credentials if any)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    headers: dict[str, str] = {}
    if parts.username is not None or parts.password is not None:
        # fetch() refuses URLs with credentials; curl sends them as Basic authentication.
        token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    bare = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return bare, f"{parts.scheme}://{netloc}", headers
