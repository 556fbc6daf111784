"""Refuse what a web page in the VM's Chromium (or a DNS-rebound name) sends to the agent and the CDP proxy.

Pages in the VM's browser reach 127.0.0.1 like any local client, so every request is checked first, before a
route is matched or a body read, by `refusal(headers, config)` (sans-io; the aiohttp middleware and the CDP
proxy call it):

- Host: an IP literal, `localhost`, `*.localhost` or a name in `allowed_hosts` (`*` = any). DNS rebinding
  needs a name that resolves to the VM, so a browser reaching us through one sends that name as Host. A
  request without Host (HTTP/1.0) passes: browsers always send it.
- Origin: browsers send it on websocket handshakes, CORS requests and every non-GET request (no-cors fetch,
  form posts). It must be the origin the request addressed (`<scheme>://<Host>`) or be in `allowed_origins`
  (`*` = any); `null` (sandboxed frames, file: pages) is not our origin.
- Sec-Fetch-Site: `cross-site` / `same-site` is a page's request even without Origin (an `<img>`, a link);
  refused unless its Origin is in `allowed_origins`. `same-origin` and `none` (the user typed the URL) pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import Handler, error_response


class GuardConfig(Protocol):
    """The two Config fields the guard reads (Config has them)."""

    @property
    def allowed_hosts(self) -> str: ...

    @property
    def allowed_origins(self) -> str: ...


class Refusal(NamedTuple):
    status: int
    code: str
    message: str


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _split_host(host: str) -> tuple[str, str] | None:
    """'name:port' / '[v6]:port' / 'name' → (name lowercased, port or ''); None when malformed."""
    host = host.strip()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if ":" in name:  # a bare IPv6 address is not a valid Host
            return None
    if port and not port.isdigit():
        return None
    return name.lower(), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _names(option: str) -> set[str]:
    return {item.strip().lower() for item in option.split(",") if item.strip()}


def _host_allowed(name: str, config: GuardConfig) -> bool:
    if _is_ip(name):
        return True
    name = name.removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True  # Chromium resolves these to loopback itself, never through DNS
    allowed = _names(config.allowed_hosts)
    if "*" in allowed:
        return True
    return name in {entry.removesuffix(".") for entry in allowed}


def _normal_origin(origin: str) -> str | None:
    """'HTTP://Example.com:80' → 'http://example.com'; None when it is not scheme://host[:port]."""
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or not scheme or "/" in rest:
        return None
    parts = _split_host(rest)
    if parts is None or not parts[0]:
        return None
    name, port = parts
    scheme = scheme.lower()
    if ":" in name:
        name = f"[{name}]"
    if port and int(port) != _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{name}:{int(port)}"
    return f"{scheme}://{name}"


def _listed(origin: str, config: GuardConfig) -> bool:
    allowed = _names(config.allowed_origins)
    if "*" in allowed:
        return True
    if origin.strip().lower() == "null":
        return "null" in allowed
    normal = _normal_origin(origin)
    return normal is not None and normal in {_normal_origin(entry) for entry in allowed}


def refusal(headers: Mapping[str, str], config: GuardConfig, scheme: str = "http") -> Refusal | None:
    """Why this request must be refused (403), or None. `headers` must look names up case-insensitively
    (aiohttp's CIMultiDict does); `scheme` is the request's own (http, or https behind TLS)."""
    host = headers.get("Host")
    if host:
        parts = _split_host(host)
        if parts is None or not parts[0] or not _host_allowed(parts[0], config):
            return Refusal(
                403,
                "forbidden_host",
                # Not echoing the name: a rebound page must learn nothing from the answer.
                "the Host header is not a loopback name or address; to serve another name, list it in "
                "AGENT_ALLOWED_HOSTS (--allowed-hosts)",
            )
    origin = headers.get("Origin")
    if origin is not None:
        own = _normal_origin(f"{scheme}://{host}") if host else None
        normal = _normal_origin(origin)
        if not _listed(origin, config) and (normal is None or normal != own):
            return Refusal(
                403,
                "forbidden_origin",
                f"requests from web pages (Origin {origin[:200]!r}) are refused; to allow one, list its "
                "origin in AGENT_ALLOWED_ORIGINS (--allowed-origins)",
            )
    site = headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in ("cross-site", "same-site") and not (origin is not None and _listed(origin, config)):
        return Refusal(
            403,
            "forbidden_origin",
            f"requests from web pages (Sec-Fetch-Site: {site}) are refused; to allow one, list its origin "
            "in AGENT_ALLOWED_ORIGINS (--allowed-origins)",
        )
    return None


def response_for(request: web.Request, config: GuardConfig) -> web.Response | None:
    """The 403 Error response for a request the guard refuses, or None."""
    refused = refusal(request.headers, config, request.scheme)
    if refused is None:
        return None
    response = error_response(refused.status, refused.code, refused.message)
    response.force_close()  # do not keep reading a body we will not use
    return response


def middleware(config: GuardConfig) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = response_for(request, config)
        if refused is not None:
            return refused
        return await handler(request)

    return guard
