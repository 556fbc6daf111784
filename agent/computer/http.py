"""Routes under /computer for input: thin adapters over the computer operations."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import json_route
from . import operations as ops


def routes(config: Config) -> list[web.RouteDef]:
    return [
        json_route("POST", "/computer/click_mouse", ops.CLICK_MOUSE),
        json_route("POST", "/computer/move_mouse", ops.MOVE_MOUSE),
        json_route("POST", "/computer/drag_mouse", ops.DRAG_MOUSE),
        json_route("POST", "/computer/scroll", ops.SCROLL),
        json_route("POST", "/computer/type", ops.TYPE_TEXT),
        json_route("POST", "/computer/press_key", ops.PRESS_KEY),
        json_route("POST", "/computer/batch", ops.BATCH),
        json_route("POST", "/computer/cursor", ops.SET_CURSOR),
        json_route("POST", "/computer/get_mouse_position", ops.MOUSE_POSITION),
    ]
