"""The WebMCP routes: thin adapters over the WebMCP operations."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import json_route
from . import operations as ops


def routes(config: Config) -> list[web.RouteDef]:
    return [
        json_route("GET", "/webmcp/tools", ops.LIST_TOOLS),
        json_route("POST", "/webmcp/invoke", ops.INVOKE),
        json_route("GET", "/webmcp/custom-tools", ops.LIST_CUSTOM),
        json_route("POST", "/webmcp/custom-tools", ops.ADD_CUSTOM),
        json_route("DELETE", "/webmcp/custom-tools/{id}", ops.DELETE_CUSTOM),
    ]
