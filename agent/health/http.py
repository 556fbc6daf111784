"""GET /health: 200 when X and Chromium are ready, else 503 with the same report (and an Error code).

The report is the readiness of X and Chromium plus every started capability's own section."""

from __future__ import annotations

from aiohttp import web

from ..capability import health_sections
from ..config import Config
from ..operation import services_of
from . import READINESS_KEY


async def health(request: web.Request) -> web.Response:
    readiness = services_of(request).get(READINESS_KEY)
    report = {**readiness.report(), **health_sections(request.app)}
    if readiness.ready:
        return web.json_response(report)
    waiting = [name for name in ("x", "chromium") if not report[name]["ready"]]
    report = {"code": "unavailable", "message": "waiting for " + " and ".join(waiting), **report}
    return web.json_response(report, status=503)


def routes(config: Config) -> list[web.RouteDef]:
    return [web.get("/health", health)]
