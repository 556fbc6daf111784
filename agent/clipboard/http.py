"""Routes /computer/clipboard/read and /computer/clipboard/write."""

from __future__ import annotations

from aiohttp import web

from ..spec import json_body
from .service import ClipboardService

CLIPBOARD_KEY = web.AppKey("clipboard", ClipboardService)


async def read_clipboard(request: web.Request) -> web.Response:
    return web.json_response({"text": await request.app[CLIPBOARD_KEY].read()})


async def write_clipboard(request: web.Request) -> web.Response:
    await request.app[CLIPBOARD_KEY].write(json_body(request)["text"])
    return web.Response(status=200)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/computer/clipboard/read", read_clipboard),
        web.post("/computer/clipboard/write", write_clipboard),
    ]
