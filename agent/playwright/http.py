"""POST /playwright/execute, and the executors it runs in (GET/DELETE /playwright/executors, extensions)."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import services_of
from ..spec import json_body
from . import PLAYWRIGHT_KEY


async def execute(request: web.Request) -> web.Response:
    body = json_body(request)
    result = (
        await services_of(request)
        .get(PLAYWRIGHT_KEY)
        .execute(body["code"], body.get("timeout_sec", 60), body.get("executor"))
    )
    return web.json_response(result)


async def list_executors(request: web.Request) -> web.Response:
    return web.json_response({"executors": await services_of(request).get(PLAYWRIGHT_KEY).list_executors()})


async def delete_executor(request: web.Request) -> web.Response:
    close_tab = request.query.get("close_tab", "true").lower() not in ("false", "0")
    await services_of(request).get(PLAYWRIGHT_KEY).delete(request.match_info["name"], close_tab=close_tab)
    return web.Response(status=204)


def routes(config: Config) -> list[web.RouteDef]:
    return [
        web.post("/playwright/execute", execute),
        web.get("/playwright/executors", list_executors),
        web.delete("/playwright/executors/{name}", delete_executor),
    ]
