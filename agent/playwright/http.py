"""POST /playwright/execute, the executors it runs in (GET/DELETE /playwright/executors, extensions) and
POST /repl: thin adapters over the Playwright operations."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import json_route
from . import operations as ops


def routes(config: Config) -> list[web.RouteDef]:
    return [
        json_route("POST", "/playwright/execute", ops.EXECUTE),
        json_route("GET", "/playwright/executors", ops.LIST_EXECUTORS),
        json_route("DELETE", "/playwright/executors/{name}", ops.DELETE_EXECUTOR),
        json_route("POST", "/repl", ops.REPL),
    ]
