"""Routes under /computer for input: parse (already validated) → service → serialize."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..spec import json_body
from .service import ComputerService

COMPUTER_KEY = web.AppKey("computer", ComputerService)


def _action(
    method: Callable[[ComputerService], Callable[[Mapping[str, Any]], Awaitable[None]]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        await method(request.app[COMPUTER_KEY])(json_body(request))
        return web.Response(status=200)

    return handler


async def set_cursor(request: web.Request) -> web.Response:
    await request.app[COMPUTER_KEY].set_cursor(json_body(request))
    return web.json_response({"ok": True})


async def get_mouse_position(request: web.Request) -> web.Response:
    x, y = await request.app[COMPUTER_KEY].mouse_position()
    return web.json_response({"x": x, "y": y})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/computer/click_mouse", _action(lambda s: s.click_mouse)),
        web.post("/computer/move_mouse", _action(lambda s: s.move_mouse)),
        web.post("/computer/drag_mouse", _action(lambda s: s.drag_mouse)),
        web.post("/computer/scroll", _action(lambda s: s.scroll)),
        web.post("/computer/type", _action(lambda s: s.type_text)),
        web.post("/computer/press_key", _action(lambda s: s.press_key)),
        web.post("/computer/batch", _action(lambda s: s.batch)),
        web.post("/computer/cursor", set_cursor),
        web.post("/computer/get_mouse_position", get_mouse_position),
    ]
