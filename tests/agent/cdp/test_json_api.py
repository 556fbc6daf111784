"""The one client of Chromium's /json endpoints, against the real Chromium of the sandbox and bad answers."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.cdp.json_api import ChromiumJson
from agent.sandbox import Sandbox


async def test_version_and_targets_of_the_real_chromium(sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        chromium = ChromiumJson(sandbox.config.chromium_cdp_url, http)
        version = await chromium.version(timeout=5)
        assert version["Browser"].startswith("Chrome/") and "webSocketDebuggerUrl" in version
        targets = await chromium.targets()
        assert any(t.get("type") == "page" for t in targets)


async def test_answers_that_are_not_what_chromium_sends_are_errors() -> None:
    async def version(request: web.Request) -> web.Response:
        return web.json_response([1])

    async def targets(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/json/version", version)
    app.router.add_get("/json/list", targets)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        chromium = ChromiumJson(str(server.make_url("")), http)
        with pytest.raises(ValueError, match="not a JSON object"):
            await chromium.version()
        with pytest.raises(aiohttp.ClientResponseError):
            await chromium.targets()
