"""POST /curl: an HTTP request through Chromium's network stack → BrowserCurlResult (or 502 on transport)."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Config
from ..errors import BadRequest
from ..operation import services_of
from ..spec import json_body
from . import CURL_KEY
from .service import CurlRequest


def _checked_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise BadRequest(f"field 'url' is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"field 'url' must be an http or https URL, got {url!r}")
    if not parts.hostname:
        raise BadRequest(f"field 'url' has no host: {url!r}")
    return url.strip()


async def curl(request: web.Request) -> web.Response:
    body = json_body(request)
    text_body = body.get("body")
    result = (
        await services_of(request)
        .get(CURL_KEY)
        .request(
            CurlRequest(
                url=_checked_url(body["url"]),
                method=body.get("method", "GET"),
                headers=body.get("headers") or {},
                body=text_body.encode("utf-8") if text_body is not None else None,
                timeout_ms=body.get("timeout_ms", 30000),
            )
        )
    )
    if body.get("response_encoding", "utf8") == "base64":
        payload = base64.b64encode(result.body).decode("ascii")
    else:
        payload = result.body.decode("utf-8", errors="replace")
    return web.json_response(
        {
            "status": result.status,
            "headers": result.headers,
            "body": payload,
            "duration_ms": result.duration_ms,
        }
    )


def routes(config: Config) -> list[web.RouteDef]:
    return [web.post("/curl", curl)]
