"""The curl operation, transport-independent: typed request → CurlService → BrowserCurlResult.

A transport failure is the service's `CurlTransportError` (502 BrowserCurlTransportError), not a result.
"""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import CURL_KEY
from .models import BrowserCurlRequest, BrowserCurlResult, CurlRequest
from .urls import checked_url


async def _browser_curl(services: Services, req: BrowserCurlRequest) -> BrowserCurlResult:
    response = await services.get(CURL_KEY).request(
        CurlRequest(
            url=checked_url(req.url),
            method=req.method,
            timeout_ms=req.timeout_ms,
            headers=req.headers or {},
            body=req.body.encode("utf-8") if req.body is not None else None,
        )
    )
    return BrowserCurlResult.of(response, req.response_encoding)


BROWSER_CURL = Operation("browserCurl", BrowserCurlRequest, _browser_curl)

OPERATIONS: tuple[Operation[Any], ...] = (BROWSER_CURL,)
