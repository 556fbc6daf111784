"""The official `kernel` SDK drives /playwright/execute (prefix stripped, as the per-session proxy does)."""

from __future__ import annotations

from agent.sandbox import Sandbox
from tests.helpers.echo_server import EchoServer
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_playwright_execute(sandbox: Sandbox, pages: EchoServer) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    url = pages.url("/page?title=from%20the%20sdk")
    async with client:
        response = await client.browsers.playwright.execute(
            SESSION_ID,
            code=f"await page.goto({url!r}); console.log('hi'); return await page.title();",
            timeout_sec=30,
        )
        assert response.success is True
        assert response.result == "from the sdk"
        assert response.stdout == "hi\n"
        assert response.tab is not None and response.tab.created is False

        failed = await client.browsers.playwright.execute(SESSION_ID, code="throw new Error('nope')")
        assert failed.success is False
        assert failed.error == "Error: nope"

        named = await client.browsers.playwright.execute(
            SESSION_ID, code="return page.url()", executor="sdk-tab"
        )
        assert named.success is True and named.result == "about:blank"
        assert named.tab is not None and named.tab.created is True
        listing = await client.browsers.playwright.executors.list(SESSION_ID)
        assert [e.name for e in listing.executors][:1] == ["default"]
        assert "sdk-tab" in [e.name for e in listing.executors]
        await client.browsers.playwright.executors.delete("sdk-tab", id_or_name=SESSION_ID)
    assert ("POST", "/playwright/execute", 200) in transport.seen
