"""POST /curl: the thin HTTP adapter over the browserCurl operation."""

from __future__ import annotations

from aiohttp import web

from ..config import Config
from ..operation import json_route
from .operations import BROWSER_CURL


def routes(config: Config) -> list[web.RouteDef]:
    return [json_route("POST", "/curl", BROWSER_CURL)]
