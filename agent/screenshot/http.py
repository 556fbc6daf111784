"""Route /computer/screenshot: PNG by default, JPEG when the client prefers it (Accept: image/jpeg)."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import services_of, typed_request
from . import SCREENSHOT_KEY
from .models import ScreenshotRequest


def prefers_jpeg(accept: str) -> bool:
    """True when the Accept header ranks image/jpeg above image/png."""
    weights: dict[str, float] = {}
    for item in accept.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        weights[kind.lower()] = q
    jpeg = max(weights.get("image/jpeg", 0.0), weights.get("image/jpg", 0.0))
    return jpeg > 0 and jpeg > weights.get("image/png", 0.0)


async def take_screenshot(request: web.Request) -> web.Response:
    # A binary answer whose format the Accept header picks: an HTTP-only adapter (bulk data never rides the
    # control link), over the same typed request.
    req = typed_request(request, ScreenshotRequest)
    jpeg = prefers_jpeg(request.headers.get("Accept", ""))
    image = await services_of(request).get(SCREENSHOT_KEY).capture(req.region, jpeg=jpeg)
    return web.Response(body=image.data, content_type=image.content_type)


def routes(config: Config) -> list[web.RouteDef]:
    return [web.post("/computer/screenshot", take_screenshot)]
