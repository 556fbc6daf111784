"""POST /curl (the thin adapter over the browserCurl operation) and /curl/raw (HTTP-only: its transport is
its semantics: the caller's method, headers and body go out raw, the target's answer comes back streamed)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..config import Config
from ..errors import PayloadTooLarge
from ..operation import build, json_route, services_of, typed_request
from ..spec import SPEC_KEY, check_parameters
from . import CURL_KEY
from .models import CurlRawRequest, CurlRequest
from .operations import BROWSER_CURL
from .raw import request_headers, response_headers, target_url
from .urls import checked_url

log = logging.getLogger(__name__)

RAW_PATH = "/curl/raw"
# /curl/raw has no timeout parameter of its own (every other query parameter is the target's): the answer's
# status and headers must come within the spec's default /curl timeout; the body then takes what it takes.
RAW_HEADERS_TIMEOUT_MS = 30000
_READ = 256 * 1024


def routes(config: Config) -> list[web.RouteDef]:
    raw = _raw_handler(config)
    return [
        json_route("POST", "/curl", BROWSER_CURL),
        web.get(RAW_PATH, raw),  # HEAD too
        *(web.route(method, RAW_PATH, raw) for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")),
    ]


def _raw_request(request: web.Request) -> CurlRawRequest:
    if request.method == "HEAD":
        # HEAD is not an operation of its own in the spec: its parameters are GET's.
        operation = request.app[SPEC_KEY].operations[("GET", RAW_PATH)]
        return build(CurlRawRequest, check_parameters(operation, request))
    return typed_request(request, CurlRawRequest)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    if not request.body_exists:
        return None
    too_large = f"request body is larger than {limit} bytes (config curl_raw_max_request_bytes)"
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(too_large)
    body = bytearray()
    while chunk := await request.content.read(_READ):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(body)


def _raw_handler(config: Config) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        req = _raw_request(request)
        curl_request = CurlRequest(
            url=checked_url(target_url(req.url, request.rel_url.raw_query_string)),
            method=request.method,
            timeout_ms=RAW_HEADERS_TIMEOUT_MS,
            headers=request_headers(request.headers.items()),
            body=await _read_body(request, config.curl_raw_max_request_bytes),
        )
        service = services_of(request).get(CURL_KEY)
        async with service.raw(curl_request, max_body_bytes=config.curl_raw_max_bytes) as answer:
            response = web.StreamResponse(status=answer.status)
            keep_length = answer.has_body or request.method == "HEAD"
            for name, value in response_headers(answer.headers, keep_length=keep_length):
                response.headers.add(name, value)
            await response.prepare(request)
            try:
                async for chunk in answer.body:
                    await response.write(chunk)
            except (ConnectionResetError, ConnectionError):
                return response  # the client went away
            except Exception as exc:
                # The status is sent already: cut the connection so the client sees a truncated transfer,
                # never a body that looks complete.
                log.warning("%s %s: the body stopped half-way: %s", request.method, curl_request.url, exc)
                if request.transport is not None:
                    request.transport.abort()
                return response
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write_eof()
            return response

    return handler
