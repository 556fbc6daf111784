"""The CDP proxy on cdp_port: /json endpoints rewritten to the proxy, websockets of any size, Playwright."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import websockets
from playwright.async_api import async_playwright

from agent.cdp.proxy import opens_tab_on_url
from agent.sandbox import Sandbox
from tests.conftest import AgentClient


async def get_json(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def ws_call(url: str, method: str, **params: Any) -> dict[str, Any]:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "method": method, "params": params}))
        reply: dict[str, Any] = json.loads(await ws.recv())
        return reply


async def test_version_points_at_the_proxy(sandbox: Sandbox) -> None:
    port = sandbox.config.cdp_port
    status, version = await get_json(sandbox.cdp_url + "/json/version")
    assert status == 200
    assert version["Browser"].startswith("Chrome/")
    assert version["webSocketDebuggerUrl"].startswith(f"ws://127.0.0.1:{port}/devtools/browser/")
    # Built from the Host header, so it works from wherever the client stands (names other than localhost
    # need AGENT_ALLOWED_HOSTS, see tests/agent/test_hostile_page.py).
    status, version = await get_json(sandbox.cdp_url + "/json/version", headers={"Host": "10.1.2.3:443"})
    assert version["webSocketDebuggerUrl"].startswith("ws://10.1.2.3:443/devtools/browser/")


async def test_list_points_at_the_proxy(sandbox: Sandbox) -> None:
    port = sandbox.config.cdp_port
    for path in ("/json/list", "/json"):
        status, targets = await get_json(sandbox.cdp_url + path)
        assert status == 200 and targets
        for target in targets:
            assert target["webSocketDebuggerUrl"].startswith(f"ws://127.0.0.1:{port}/devtools/"), target
            assert str(sandbox.config.chromium_cdp_port) not in json.dumps(target)
            if "devtoolsFrontendUrl" in target:
                assert f"ws=127.0.0.1:{port}/devtools/" in target["devtoolsFrontendUrl"]


async def test_new_activate_close_and_a_page_websocket(sandbox: Sandbox) -> None:
    status, target = await get_json(sandbox.cdp_url + "/json/new?about:blank", method="PUT")
    assert status == 200, target
    try:
        reply = await ws_call(
            target["webSocketDebuggerUrl"], "Runtime.evaluate", expression="6 * 7", returnByValue=True
        )
        assert reply["result"]["result"]["value"] == 42
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{sandbox.cdp_url}/json/activate/{target['id']}") as response,
        ):
            assert response.status == 200
    finally:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{sandbox.cdp_url}/json/close/{target['id']}") as r,
        ):
            assert r.status == 200
    for _ in range(100):  # "Target is closing": it leaves the list a moment later
        status, targets = await get_json(sandbox.cdp_url + "/json/list")
        if target["id"] not in {t["id"] for t in targets}:
            break
        await asyncio.sleep(0.02)
    assert target["id"] not in {t["id"] for t in targets}


async def test_browser_endpoint_under_any_id_is_the_current_browser(sandbox: Sandbox) -> None:
    url = f"ws://127.0.0.1:{sandbox.config.cdp_port}/devtools/browser/00000000-not-the-id"
    reply = await ws_call(url, "Browser.getVersion")
    assert reply["result"]["product"].startswith("Chrome/")


async def test_large_frames_pass_both_ways(sandbox: Sandbox) -> None:
    _, targets = await get_json(sandbox.cdp_url + "/json/list")
    page = next(t for t in targets if t["type"] == "page")
    big = "y" * (3 * 1024 * 1024)
    async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
        # 3 MiB up, 20 MiB down: far above the websockets default of 1 MiB.
        expression = f"'{big}'.length + 'x'.repeat(20 * 1024 * 1024)"
        await ws.send(
            json.dumps({"id": 7, "method": "Runtime.evaluate", "params": {"expression": expression}})
        )
        reply = json.loads(await ws.recv())
    value = reply["result"]["result"]["value"]
    assert value.startswith(str(len(big)) + "xxx") and len(value) == len(str(len(big))) + 20 * 1024 * 1024


async def test_unknown_page_is_404(sandbox: Sandbox) -> None:
    with pytest.raises(websockets.InvalidStatus) as caught:
        await ws_call(f"ws://127.0.0.1:{sandbox.config.cdp_port}/devtools/page/NOPE", "Runtime.enable")
    assert caught.value.response.status_code == 404


async def test_playwright_connects_through_the_proxy(sandbox: Sandbox, agent: AgentClient) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(sandbox.cdp_url)
        try:
            pages = [p for c in browser.contexts for p in c.pages]
            assert pages
            assert await pages[0].evaluate("1 + 1") == 2
            proxy = (await agent.get("/health")).json()["cdp"]["proxy"]
            assert proxy["connections"] >= 1
            assert proxy["last_activity_s_ago"] < 5
        finally:
            await browser.close()  # over CDP: disconnects, leaves Chromium running
    status, _ = await get_json(sandbox.cdp_url + "/json/version")
    assert status == 200


async def test_live_connections_are_counted(sandbox: Sandbox, agent: AgentClient) -> None:
    async def connections() -> int:
        count: int = (await agent.get("/health")).json()["cdp"]["proxy"]["connections"]
        return count

    before = await connections()
    _, version = await get_json(sandbox.cdp_url + "/json/version")
    async with websockets.connect(version["webSocketDebuggerUrl"], max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
        await ws.recv()
        assert await connections() == before + 1
    for _ in range(100):  # the proxy sees the close a moment later
        if await connections() == before:
            break
        await asyncio.sleep(0.02)
    assert await connections() == before


@pytest.mark.parametrize(
    ("frame", "opens"),
    [
        ('{"id":1,"method":"Target.createTarget","params":{"url":"http://x/"}}', True),
        ('{"id":1, "method" : "Target.createTarget", "params": {"url": "https://a/", "x": 1}}', True),
        ('{"id":1,"method":"Target.createTarget","params":{"url":"about:blank"}}', False),
        ('{"id":1,"method":"Target.createTarget","params":{"url":""}}', False),
        ('{"id":1,"method":"Target.createTarget","params":{}}', False),
        ('{"id":1,"method":"Runtime.evaluate","params":{"expression":"\'Target.createTarget\'"}}', False),
        ('{"id":1,"method":"Target.createTarget","params":{"url":', False),
        ('["Target.createTarget"]', False),
        ('{"method":"Target.createTarget","params":["http://x/"]}', False),
        ('{"id":1,"method":"Page.navigate","params":{"url":"http://x/"}}', False),
    ],
)
def test_which_client_frames_open_a_tab_on_a_url(frame: str, opens: bool) -> None:
    assert opens_tab_on_url(frame) is opens
