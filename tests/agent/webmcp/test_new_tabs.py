"""A tab opened directly on a URL (Target.createTarget with the URL, /json/new?url, window.open) gets the
injected navigator.modelContext before its first document's scripts run: an inline registration is never
missed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from tests.agent.webmcp.test_webmcp import invoke, list_tools
from tests.conftest import AgentClient

# The registration is the first thing the document's first script does; `missed` tells a late shim apart.
FIRST = """<!doctype html><title>first document</title><script>
window.missed = !("modelContext" in navigator);
navigator.modelContext.registerTool({
  name: "first_" + new URLSearchParams(location.search).get("n"),
  description: "registered by the first document",
  execute: async () => ({ok: true, missed: window.missed}),
});
</script><p>first</p>"""
OPENER = "<!doctype html><title>opener</title><script>window.__ready = true;</script>"
ROUNDS = int(os.environ.get("WEBMCP_NEW_TAB_ROUNDS", "4"))


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def first(request: web.Request) -> web.Response:
        return web.Response(text=FIRST, content_type="text/html")

    async def opener(request: web.Request) -> web.Response:
        return web.Response(text=OPENER, content_type="text/html")

    app = web.Application()
    app.router.add_get("/first", first)
    app.router.add_get("/opener", opener)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def tool_of(agent: AgentClient, url: str, name: str) -> dict[str, Any]:
    for _ in range(200):  # within 10 s: the tab loads meanwhile
        tools = [
            t for t in await list_tools(agent) if t["source"]["page_url"] == url and t["tool"]["name"] == name
        ]
        if tools:
            assert len(tools) == 1
            return tools[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the first document's tool {name} of {url} was never listed")


async def targets_at(cdp: PageSession, url: str) -> list[str]:
    infos = (await cdp.call("Target.getTargets"))["targetInfos"]
    return [t["targetId"] for t in infos if t["type"] == "page" and t["url"] == url]


async def check_and_close(agent: AgentClient, cdp: PageSession, url: str, name: str) -> None:
    tool = await tool_of(agent, url, name)
    done = await invoke(agent, tool["tool_ref"], {})
    assert done["status"] == "completed"
    assert done["output"] == {"ok": True, "missed": False}
    for target in await targets_at(cdp, url):
        await cdp.call("Target.closeTarget", targetId=target)


async def test_a_tab_created_with_its_url_has_its_first_documents_tools(
    agent: AgentClient, cdp_page: PageSession, site: str
) -> None:
    for n in range(ROUNDS):
        url = f"{site}/first?n=create{n}"
        await cdp_page.call("Target.createTarget", url=url)
        await check_and_close(agent, cdp_page, url, f"first_create{n}")


async def test_a_popup_opened_by_a_page_has_its_first_documents_tools(
    agent: AgentClient, cdp_page: PageSession, site: str
) -> None:
    await cdp_page.navigate(site + "/opener")
    for n in range(ROUNDS):
        url = f"{site}/first?n=popup{n}"
        reply = await cdp_page.call(
            "Runtime.evaluate", expression=f"!!window.open({url!r})", userGesture=True, returnByValue=True
        )
        assert reply["result"]["value"] is True
        await check_and_close(agent, cdp_page, url, f"first_popup{n}")
    # noopener popups get a fresh browsing context group (a renderer of their own): the same holds.
    for n in range(ROUNDS):
        url = f"{site}/first?n=noopener{n}"
        await cdp_page.call(
            "Runtime.evaluate", expression=f"window.open({url!r}, '_blank', 'noopener')", userGesture=True
        )
        await check_and_close(agent, cdp_page, url, f"first_noopener{n}")


async def test_a_tab_opened_with_json_new_on_its_url_has_its_first_documents_tools(
    agent: AgentClient, cdp_page: PageSession, sandbox: Sandbox, site: str
) -> None:
    async with aiohttp.ClientSession() as http:
        for n in range(ROUNDS):
            url = f"{site}/first?n=jsonnew{n}"
            async with http.put(f"{sandbox.cdp_url}/json/new?{url}") as response:
                assert response.status == 200
            await check_and_close(agent, cdp_page, url, f"first_jsonnew{n}")
