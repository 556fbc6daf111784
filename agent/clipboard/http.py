"""Routes /computer/clipboard/read and /computer/clipboard/write."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import json_route
from . import operations as ops


def routes(config: Config) -> list[web.RouteDef]:
    return [
        json_route("POST", "/computer/clipboard/read", ops.READ),
        json_route("POST", "/computer/clipboard/write", ops.WRITE),
    ]
