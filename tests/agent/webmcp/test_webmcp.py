"""WebMCP against the real Chromium: a local page's tools listed and invoked, custom tools, and the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.operation import Operations, build
from agent.sandbox import Sandbox
from agent.services import Services
from agent.spec import Spec, check
from agent.webmcp import models
from agent.webmcp.operations import OPERATIONS
from harness.cdp import PageSession
from tests.conftest import AgentClient
from tests.helpers.sdk import SESSION_ID, sdk_client

SPEC = Spec.load()
TOOLS = SPEC.schema_validator("WebmcpToolsResponse")
RESULT = SPEC.schema_validator("WebmcpInvocationResult")
CUSTOM = SPEC.schema_validator("WebmcpCustomToolsResponse")

TOOLS_PAGE = Path(__file__).with_name("tools_page.html").read_text()  # registers add, fail, hang
PLAIN_PAGE = "<!doctype html><title>plain</title><script>window.__ready = true;</script>"


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def tools(request: web.Request) -> web.Response:
        return web.Response(text=TOOLS_PAGE, content_type="text/html")

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text=PLAIN_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/tools", tools)
    app.router.add_get("/plain", plain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def list_tools(agent: AgentClient, **query: str) -> list[dict[str, Any]]:
    reply = await agent.get("/webmcp/tools", params=query)
    assert reply.status == 200, reply
    data: dict[str, Any] = reply.json()
    check(TOOLS, data)
    tools: list[dict[str, Any]] = data["tools"]
    return tools


async def invoke(
    agent: AgentClient, tool_ref: str, tool_input: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    reply = await agent.post("/webmcp/invoke", {"tool_ref": tool_ref, "input": tool_input, **extra})
    assert reply.status == 200, reply
    data: dict[str, Any] = reply.json()
    check(RESULT, data)
    return data


def test_typed_requests_get_the_spec_defaults() -> None:
    ops = Operations(SPEC, Services(), OPERATIONS)
    req = build(models.InvokeToolRequest, ops.validate("invokeWebmcpTool", {"tool_ref": "r", "input": {}}))
    assert req == models.InvokeToolRequest(tool_ref="r", input={}, timeout_sec=30)
    assert build(models.ListToolsRequest, ops.validate("listWebmcpTools", {})).exclude_custom is False
    added = ops.validate("addWebmcpCustomTools", {"namespace": "n", "source": "[]"})
    assert build(models.AddCustomToolsRequest, added).force_overwrite_namespace is False


async def test_a_page_tool_is_listed_invoked_and_gone_with_its_document(
    agent: AgentClient, cdp_page: PageSession, site: str
) -> None:
    await cdp_page.navigate(site + "/tools#frag")
    tools = [t for t in await list_tools(agent) if t["source"]["page_url"] == site + "/tools"]
    by_name = {t["tool"]["name"]: t for t in tools}
    assert sorted(by_name) == ["add", "fail", "hang"]
    add = by_name["add"]
    assert add["tool"]["description"] == "adds two numbers"
    assert add["tool"]["inputSchema"]["properties"]["a"] == {"type": "number"}
    assert add["tool"]["annotations"] == {"readOnlyHint": True}
    assert add["source"]["page_title"] == "tools page"
    assert add["source"]["frame"] is None
    assert isinstance(add["source"]["tab_id"], int) and "target_id" not in add["source"]

    done = await invoke(agent, add["tool_ref"], {"a": 2, "b": 3})
    assert done["status"] == "completed"
    assert done["output"] == {"content": [{"type": "text", "text": "5"}]}
    failed = await invoke(agent, by_name["fail"]["tool_ref"], {})
    assert failed["status"] == "error" and "broken" in failed["error_text"]
    hung = await invoke(agent, by_name["hang"]["tool_ref"], {}, timeout_sec=1)
    assert hung["status"] == "error" and hung["error_text"].startswith("outcome_unknown")
    assert await cdp_page.evaluate("window.calls") == 1  # each invocation ran once, none was retried

    await cdp_page.navigate(site + "/plain")
    assert not [t for t in await list_tools(agent) if t["source"]["page_url"] == site + "/tools"]
    gone = await agent.post("/webmcp/invoke", {"tool_ref": add["tool_ref"], "input": {"a": 1, "b": 1}})
    assert gone.status == 404, gone
    # The same page again is a new document: the old ref stays dead, a new listing has a new ref.
    await cdp_page.navigate(site + "/tools")
    again = {
        t["tool"]["name"]: t for t in await list_tools(agent) if t["source"]["page_url"] == site + "/tools"
    }
    assert again["add"]["tool_ref"] != add["tool_ref"]
    stale = await agent.post("/webmcp/invoke", {"tool_ref": add["tool_ref"], "input": {"a": 1, "b": 1}})
    assert stale.status == 404
    bad = await agent.post("/webmcp/invoke", {"tool_ref": "nonsense", "input": {}})
    assert bad.status == 400 and bad.json()["code"] == "bad_request"


async def test_custom_tools_added_listed_invoked_and_deleted_with_the_sdk(
    sandbox: Sandbox, agent: AgentClient, cdp_page: PageSession, site: str
) -> None:
    await cdp_page.navigate(site + "/plain")
    source = (
        "[{match: {url_patterns: ['" + site + "/plain*']},"
        " tool: {name: 'title', description: 'the page title', inputSchema: {type: 'object'}},"
        " execute: async (input) => ({title: document.title, echo: input.x})}]"
    )
    client, transport = sdk_client(sandbox.agent_url)
    async with client:
        added = await client.browsers.webmcp.custom_tools.add(SESSION_ID, namespace="test", source=source)
        assert len(added.tools) == 1
        definition = added.tools[0]
        assert definition.namespace == "test" and definition.kind == "page"
        assert definition.match.url_patterns == [site + "/plain*"]
        listed = await client.browsers.webmcp.custom_tools.list(SESSION_ID)
        assert definition.id in [t.id for t in listed.tools]

        tools = await client.browsers.webmcp.list_tools(SESSION_ID)
        mine = [t for t in tools.tools if t.source.custom is not None and t.source.custom.id == definition.id]
        assert len(mine) == 1
        assert mine[0].source.target_id and mine[0].source.page_url == site + "/plain"
        assert mine[0].tool.name == "title"
        only_pages = await client.browsers.webmcp.list_tools(SESSION_ID, exclude_custom=True)
        assert all(t.source.custom is None for t in only_pages.tools)

        result = await client.browsers.webmcp.invoke_tool(
            SESSION_ID, tool_ref=mine[0].tool_ref, input={"x": 7}
        )
        assert result.status == "completed"
        assert result.output == {"title": "plain", "echo": 7}

        await client.browsers.webmcp.custom_tools.remove(definition.id, id_or_name=SESSION_ID)
        tools = await client.browsers.webmcp.list_tools(SESSION_ID)
        assert not [
            t for t in tools.tools if t.source.custom is not None and t.source.custom.id == definition.id
        ]
    assert ("POST", "/webmcp/custom-tools", 200) in transport.seen
    gone = await agent.request("DELETE", f"/webmcp/custom-tools/{definition.id}")
    assert gone.status == 404
    stale = await agent.post("/webmcp/invoke", {"tool_ref": mine[0].tool_ref, "input": {}})
    assert stale.status == 404


async def test_a_bad_custom_source_is_a_400(agent: AgentClient, cdp_page: PageSession, site: str) -> None:
    await cdp_page.navigate(site + "/plain")
    for source in ["[]", "42", "[{tool: {name: 'x'}, match: {url_patterns: ['*']}}]", "syntax error here"]:
        reply = await agent.post("/webmcp/custom-tools", {"namespace": "bad", "source": source})
        assert reply.status == 400, (source, reply)
        assert reply.json()["code"] == "bad_request"
    reply = await agent.get("/webmcp/custom-tools")
    assert reply.status == 200
    check(CUSTOM, reply.json())
    assert not [t for t in reply.json()["tools"] if t["namespace"] == "bad"]
