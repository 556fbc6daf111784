"""Route /computer/screenshot: PNG by default; JPEG or WebP when the client ranks it above PNG in Accept."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import services_of, typed_request
from . import SCREENSHOT_KEY
from .models import ScreenshotRequest
from .service import ImageKind

# Cheapest first: the order that breaks a tie between two formats both ranked above PNG.
_ALTERNATIVES: tuple[tuple[ImageKind, tuple[str, ...]], ...] = (
    ("jpeg", ("image/jpeg", "image/jpg")),
    ("webp", ("image/webp",)),
)


def _weights(accept: str) -> dict[str, float]:
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
    return weights


def negotiate(accept: str) -> ImageKind:
    """PNG unless the Accept header names JPEG or WebP with a higher q than image/png (absent counts 0;
    wildcards are ignored, so `*/*` or a missing header is PNG)."""
    weights = _weights(accept)
    best: ImageKind = "png"
    best_q = weights.get("image/png", 0.0)
    for kind, names in _ALTERNATIVES:
        q = max(weights.get(name, 0.0) for name in names)
        if q > 0 and q > best_q:
            best, best_q = kind, q
    return best


async def take_screenshot(request: web.Request) -> web.Response:
    # A binary answer whose format the Accept header picks: an HTTP-only adapter (bulk data never rides the
    # control link), over the same typed request.
    req = typed_request(request, ScreenshotRequest)
    kind = negotiate(request.headers.get("Accept", ""))
    image = await services_of(request).get(SCREENSHOT_KEY).capture(req.region, kind=kind)
    # The format depends on Accept: caches between the client and us must key on it.
    return web.Response(body=image.data, content_type=image.content_type, headers={"Vary": "Accept"})


def routes(config: Config) -> list[web.RouteDef]:
    return [web.post("/computer/screenshot", take_screenshot)]
