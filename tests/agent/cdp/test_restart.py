"""Chromium restarts (supervisorctl restart, or a kill that supervisord answers): the proxy URL keeps working
for Playwright and raw clients, and /curl and /playwright/execute recover on their own."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aiohttp
import psutil
import pytest
import websockets
from playwright.async_api import async_playwright

from agent.sandbox import Sandbox
from tests.helpers.echo_server import EchoServer


async def get_json(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
        http.request(method, url, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def generation(box: Sandbox) -> int:
    status, report = await get_json(box.agent_url + "/health")
    cdp = report.get("cdp", {})
    return int(cdp["generation"]) if status == 200 and cdp.get("connected") else 0


async def wait_for_generation(box: Sandbox, above: int) -> int:
    for _ in range(600):
        current = await generation(box)
        if current > above:
            return current
        await asyncio.sleep(0.1)
    raise AssertionError(f"the agent never reconnected to Chromium (generation stayed {above})")


async def raw_browser_call(url: str) -> str:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
        reply = json.loads(await ws.recv())
        product: str = reply["result"]["product"]
        return product


async def playwright_round_trip(cdp_url: str) -> int:
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(cdp_url)
        try:
            page = (
                browser.contexts[0].pages[0]
                if browser.contexts[0].pages
                else await browser.contexts[0].new_page()
            )
            value: int = await page.evaluate("20 + 22")
            return value
        finally:
            await browser.close()


async def features_work(box: Sandbox, echo_server: EchoServer) -> None:
    status, curl = await get_json(box.agent_url + "/curl", "POST", {"url": echo_server.url("/echo?after=1")})
    assert status == 200 and curl["status"] == 200, curl
    status, executed = await get_json(
        box.agent_url + "/playwright/execute", "POST", {"code": "return await page.evaluate(() => 1 + 1)"}
    )
    assert status == 200 and executed == {**executed, "success": True, "result": 2}, executed


def chromium_browser_process(box: Sandbox) -> psutil.Process:
    assert box.process is not None
    return next(
        p
        for p in psutil.Process(box.process.pid).children(recursive=True)
        if p.name() == "chromium" and not any(a.startswith("--type=") for a in p.cmdline())
    )


async def test_proxy_and_features_survive_chromium_restarts(
    own_sandbox: Sandbox, echo_server: EchoServer
) -> None:
    box = own_sandbox
    _, version = await get_json(box.cdp_url + "/json/version")
    first_url = version["webSocketDebuggerUrl"]
    assert (await raw_browser_call(first_url)).startswith("Chrome/")
    assert await playwright_round_trip(box.cdp_url) == 42
    await features_work(box, echo_server)
    before = await generation(box)

    # A restart through supervisord: a client connected meanwhile is closed (not left hanging).
    held = await websockets.connect(first_url, max_size=None)
    output = await asyncio.to_thread(box.supervisorctl, "restart", "chromium")
    assert "started" in output, output
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(held.recv(), 30)
    await held.close()
    after_restart = await wait_for_generation(box, before)
    _, version = await get_json(box.cdp_url + "/json/version")
    assert version["webSocketDebuggerUrl"] != first_url  # a new browser id...
    assert version["webSocketDebuggerUrl"].startswith(
        f"ws://127.0.0.1:{box.config.cdp_port}/devtools/browser/"
    )
    assert (await raw_browser_call(first_url)).startswith("Chrome/")  # ...but the old URL still works
    assert await playwright_round_trip(box.cdp_url) == 42  # the same proxy URL
    await features_work(box, echo_server)

    # A crash: supervisord starts Chromium again, and everything comes back by itself.
    chromium_browser_process(box).send_signal(signal.SIGKILL)
    await wait_for_generation(box, after_restart)
    assert (await raw_browser_call(first_url)).startswith("Chrome/")
    assert await playwright_round_trip(box.cdp_url) == 42
    await features_work(box, echo_server)


async def test_calls_made_while_chromium_restarts_wait_for_it(
    own_sandbox: Sandbox, echo_server: EchoServer
) -> None:
    box = own_sandbox
    before = await generation(box)
    chromium_browser_process(box).send_signal(signal.SIGKILL)
    # Right away, before the agent has noticed: the proxy waits for Chromium instead of failing.
    status, version = await get_json(box.cdp_url + "/json/version")
    assert status == 200 and version["Browser"].startswith("Chrome/")
    await wait_for_generation(box, before)
    await features_work(box, echo_server)


async def test_the_named_executor_limit_is_a_409(own_sandbox: Sandbox) -> None:
    box = own_sandbox  # started with playwright_max_executors=1
    url = box.agent_url + "/playwright/execute"
    status, first = await get_json(url, "POST", {"code": "return 1", "executor": "one"})
    assert status == 200 and first["success"] is True, first
    status, error = await get_json(url, "POST", {"code": "return 2", "executor": "two"})
    assert status == 409, error
    assert error["code"] == "conflict" and "limit (1)" in error["message"] and "one" in error["message"]
    status, default = await get_json(url, "POST", {"code": "return 3"})
    assert status == 200 and default["result"] == 3  # the default executor does not count
    async with (
        aiohttp.ClientSession() as http,
        http.delete(box.agent_url + "/playwright/executors/one") as reply,
    ):
        assert reply.status == 204
    status, second = await get_json(url, "POST", {"code": "return 2", "executor": "two"})
    assert status == 200 and second["result"] == 2
