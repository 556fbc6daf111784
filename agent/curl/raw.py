"""/curl/raw's pass-through rules, pure: the target URL from the query, which headers go through.

The SDK sends `<vm>/curl/raw?<the caller's params>&url=<target>&jwt=<token>`: every query parameter but
`url` and `jwt` belongs to the target URL and is appended to its query exactly as it came (same order, same
encoding). Request and response headers go through as they are, less those that describe the hop rather than
the message, those the browser owns, and the SDK's own plumbing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

RESERVED_QUERY = frozenset({"url", "jwt"})  # the agent's (the SDK keeps callers from setting them)

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing aiohttp and Chromium each redo on their side.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# Set by Chromium for the target: the target's Host, and the encodings it can decode (the body it hands
# over is decoded, so the caller's Accept-Encoding could only produce a mislabelled answer).
_BROWSER_OWNS = frozenset({"host", "accept-encoding"})
# The SDK's transport plumbing, not part of the caller's request.
_SDK_HEADER = re.compile(r"^(x-stainless-|x-kernel-)", re.IGNORECASE)
_SDK_USER_AGENT = re.compile(r"^(Async)?Kernel/Python ")


def target_url(url: str, raw_query: str) -> str:
    """`url` with the query's other parameters appended to its own query, byte for byte."""
    extra = [
        part
        for part in raw_query.split("&")
        if part and unquote_plus(part.split("=", 1)[0]) not in RESERVED_QUERY
    ]
    if not extra:
        return url
    base, hash_, fragment = url.partition("#")
    joiner = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return base + joiner + "&".join(extra) + hash_ + fragment


def request_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The caller's headers to send (repeated names joined with ", ", as HTTP allows)."""
    out: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in _HOP or lower in _BROWSER_OWNS or _SDK_HEADER.match(name):
            continue
        if lower == "user-agent" and _SDK_USER_AGENT.match(value):
            continue  # the SDK's own, not the caller's: the browser's goes instead
        key = spelling.setdefault(lower, name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def response_headers(headers: Mapping[str, list[str]], *, keep_length: bool) -> list[tuple[str, str]]:
    """The target's headers to return; Content-Length only where it is the length of the body we send
    (`keep_length`: there is a body, or it is a HEAD answer, whose Content-Length is the GET's)."""
    decoded = any(k.lower() == "content-encoding" for k in headers) or not keep_length
    out: list[tuple[str, str]] = []
    for name, values in headers.items():
        lower = name.lower()
        if lower in _HOP and lower != "content-length":
            continue
        if decoded and lower in ("content-length", "content-encoding"):
            continue  # Chromium hands over the decoded body (or none): its length is not the declared one
        out.extend((name, value) for value in values)
    return out


def declared_length(headers: Iterable[tuple[str, str]]) -> int | None:
    value = next((v for k, v in headers if k.lower() == "content-length"), None)
    return int(value) if value is not None and value.strip().isdigit() else None
