"""WebMCP tools registered in embedded frames: same origin, another origin in process, and an out-of-process
frame (another site: `localhost` on another loopback port), listed with their frame, invoked, gone with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from tests.agent.webmcp.test_webmcp import invoke, list_tools
from tests.conftest import AgentClient

# A frame's tool, named by the query: it answers with where it runs (and which input it got).
CHILD = """<!doctype html><title>child</title><script>
const name = new URLSearchParams(location.search).get("name");
navigator.modelContext.registerTool({
  name, description: "a tool of an embedded frame", inputSchema: {type: "object"},
  execute: async (input) => ({
    where: location.href, origin: location.origin, top: window !== window.top ? "embedded" : "top", input,
  }),
});
</script>"""


def parent_page(other: int) -> str:
    return f"""<!doctype html><title>frames</title>
<iframe id="same" src="/child?name=same_origin#f"></iframe>
<iframe id="xorigin" src="http://127.0.0.1:{other}/child?name=other_origin"></iframe>
<iframe id="oopif" src="http://localhost:{other}/child?name=other_site"></iframe>
<script>window.onload = () => {{ window.__ready = true; }};</script>"""


async def serve(routes: dict[str, Callable[[], str]]) -> tuple[web.AppRunner, int]:
    app = web.Application()
    for path, body in routes.items():

        async def handler(request: web.Request, body: Callable[[], str] = body) -> web.Response:
            return web.Response(text=body(), content_type="text/html")

        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def sites() -> AsyncIterator[tuple[int, int]]:
    other, other_port = await serve({"/child": lambda: CHILD})
    main, main_port = await serve({"/frames": lambda: parent_page(other_port), "/child": lambda: CHILD})
    yield main_port, other_port
    await main.cleanup()
    await other.cleanup()


async def frame_tools(agent: AgentClient, page_url: str, want: int) -> dict[str, dict[str, Any]]:
    """The frame tools of the page, once `want` of them are listed (frames attach as they load)."""
    for _ in range(200):
        tools = [
            t
            for t in await list_tools(agent)
            if t["source"]["page_url"] == page_url and t["source"]["frame"] is not None
        ]
        if len(tools) == want:
            return {t["tool"]["name"]: t for t in tools}
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {want} frame tools, the listing has {tools}")


async def test_frame_tools_are_listed_with_their_frame_invoked_and_gone_with_it(
    sandbox: Sandbox, agent: AgentClient, cdp_page: PageSession, sites: tuple[int, int]
) -> None:
    main, other = sites
    page_url = f"http://127.0.0.1:{main}/frames"
    await cdp_page.navigate(page_url)
    async with aiohttp.ClientSession() as http, http.get(sandbox.cdp_url + "/json/list") as response:
        targets = await response.json()
    # The other site's frame really is out of process: a target of its own.
    assert [t["url"] for t in targets if t["type"] == "iframe"] == [
        f"http://localhost:{other}/child?name=other_site"
    ]

    tools = await frame_tools(agent, page_url, 3)
    assert sorted(tools) == ["other_origin", "other_site", "same_origin"]
    expected_urls = {
        "same_origin": f"http://127.0.0.1:{main}/child?name=same_origin",  # no fragment
        "other_origin": f"http://127.0.0.1:{other}/child?name=other_origin",
        "other_site": f"http://localhost:{other}/child?name=other_site",
    }
    for name, tool in tools.items():
        source = tool["source"]
        assert source["frame"]["url"] == expected_urls[name]
        assert source["page_title"] == "frames"
        assert isinstance(source["frame"]["frame_id"], int)
        assert "target_id" not in source and "custom" not in source
    assert len({t["source"]["frame"]["frame_id"] for t in tools.values()}) == 3
    assert len({t["source"]["tab_id"] for t in tools.values()}) == 1
    # A second listing names the same frames the same way.
    again = await frame_tools(agent, page_url, 3)
    assert {n: t["source"]["frame"] for n, t in again.items()} == {
        n: t["source"]["frame"] for n, t in tools.items()
    }

    for name, tool in tools.items():
        done = await invoke(agent, tool["tool_ref"], {"n": name})
        assert done["status"] == "completed", done
        assert done["output"]["where"] == expected_urls[name] + ("#f" if name == "same_origin" else "")
        assert done["output"]["top"] == "embedded" and done["output"]["input"] == {"n": name}

    # Removing a frame removes its tools; its refs are dead (404, nothing runs).
    for name, element, left in [
        ("other_site", "oopif", 2),
        ("other_origin", "xorigin", 1),
        ("same_origin", "same", 0),
    ]:
        await cdp_page.evaluate(f"document.getElementById({element!r}).remove()")
        remaining = await frame_tools(agent, page_url, left)
        assert name not in remaining
        gone = await agent.post("/webmcp/invoke", {"tool_ref": tools[name]["tool_ref"], "input": {}})
        assert gone.status == 404, (name, gone)
        assert gone.json()["code"] == "not_found"


async def test_a_frame_that_navigates_has_a_new_document(
    agent: AgentClient, cdp_page: PageSession, sites: tuple[int, int]
) -> None:
    main, other = sites
    page_url = f"http://127.0.0.1:{main}/frames"
    await cdp_page.navigate(page_url)
    before = await frame_tools(agent, page_url, 3)
    await cdp_page.evaluate(
        f"document.getElementById('oopif').src = 'http://localhost:{other}/child?name=renamed'"
    )
    for _ in range(200):
        after = await frame_tools(agent, page_url, 3)
        if "renamed" in after:
            break
        await asyncio.sleep(0.05)
    assert sorted(after) == ["other_origin", "renamed", "same_origin"]
    stale = await agent.post("/webmcp/invoke", {"tool_ref": before["other_site"]["tool_ref"], "input": {}})
    assert stale.status == 404
    done = await invoke(agent, after["renamed"]["tool_ref"], {})
    assert done["status"] == "completed"
    assert done["output"]["origin"] == f"http://localhost:{other}"
