"""GET /health: 200 when X and Chromium are ready, else 503 with the same report (and an Error code)."""

from __future__ import annotations

from aiohttp import web

from .service import Readiness

READINESS_KEY = web.AppKey("readiness", Readiness)


async def health(request: web.Request) -> web.Response:
    readiness = request.app[READINESS_KEY]
    report = readiness.report()
    if readiness.ready:
        return web.json_response(report)
    waiting = [name for name in ("x", "chromium") if not report[name]["ready"]]
    report = {"code": "unavailable", "message": "waiting for " + " and ".join(waiting), **report}
    return web.json_response(report, status=503)


def routes() -> list[web.RouteDef]:
    return [web.get("/health", health)]
