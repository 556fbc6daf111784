"""Route /computer/screenshot: PNG by default, JPEG when the client prefers it (Accept: image/jpeg)."""

from __future__ import annotations

from aiohttp import web

from ..spec import json_body
from .service import Region, ScreenshotService

SCREENSHOT_KEY = web.AppKey("screenshot", ScreenshotService)


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
    raw = json_body(request).get("region")
    region = (
        None if raw is None else Region(int(raw["x"]), int(raw["y"]), int(raw["width"]), int(raw["height"]))
    )
    jpeg = prefers_jpeg(request.headers.get("Accept", ""))
    image = await request.app[SCREENSHOT_KEY].capture(region, jpeg=jpeg)
    return web.Response(body=image.data, content_type=image.content_type)


def routes() -> list[web.RouteDef]:
    return [web.post("/computer/screenshot", take_screenshot)]
