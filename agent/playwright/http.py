"""POST /playwright/execute, and the executors it runs in (GET/DELETE /playwright/executors, extensions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..cdp import CDP_KEY
from ..config import Config
from ..spec import json_body
from .service import PlaywrightService

PLAYWRIGHT_KEY = web.AppKey("playwright", PlaywrightService)


async def execute(request: web.Request) -> web.Response:
    body = json_body(request)
    result = await request.app[PLAYWRIGHT_KEY].execute(
        body["code"], body.get("timeout_sec", 60), body.get("executor")
    )
    return web.json_response(result)


async def list_executors(request: web.Request) -> web.Response:
    return web.json_response({"executors": await request.app[PLAYWRIGHT_KEY].list_executors()})


async def delete_executor(request: web.Request) -> web.Response:
    close_tab = request.query.get("close_tab", "true").lower() not in ("false", "0")
    await request.app[PLAYWRIGHT_KEY].delete(request.match_info["name"], close_tab=close_tab)
    return web.Response(status=204)


def install(app: web.Application, config: Config) -> None:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = PlaywrightService(
            app[CDP_KEY],
            endpoint=config.chromium_cdp_url,
            node=config.playwright_node,
            max_executors=config.playwright_max_executors,
            start_timeout_s=config.playwright_start_timeout_s,
            temp_dir=config.state_dir.absolute() / "tmp",
        )
        app[PLAYWRIGHT_KEY] = service
        service.warm_up()
        yield
        await service.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/playwright/execute", execute)
    app.router.add_get("/playwright/executors", list_executors)
    app.router.add_delete("/playwright/executors/{name}", delete_executor)
