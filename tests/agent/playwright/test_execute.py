"""POST /playwright/execute against the real Chromium: page/context/browser, results, errors, timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import websockets

from agent.sandbox import Sandbox
from agent.spec import Spec, check
from harness.cdp import PageSession
from tests.conftest import AgentClient
from tests.helpers.echo_server import EchoServer

SPEC = Spec.load()
RESULT = SPEC.schema_validator("ExecutePlaywrightResult")
EXECUTORS = SPEC.schema_validator("PlaywrightExecutorList")
# Where the page is, asked of the page itself (Playwright's page.url() follows events a moment late when
# another client navigated the tab).
HREF = "await page.evaluate(() => location.href)"
BACKGROUND_TAB = {"url": "data:text/html,<title>background</title>", "background": True}


async def execute(agent: AgentClient, code: str, **extra: Any) -> dict[str, Any]:
    reply = await agent.post("/playwright/execute", {"code": code, **extra})
    assert reply.status == 200, reply
    data: dict[str, Any] = reply.json()
    check(RESULT, data)
    return data


def ok(data: dict[str, Any]) -> Any:
    assert data["success"] is True, data
    return data.get("result")


async def test_navigate_a_local_page_and_return_its_title(agent: AgentClient, pages: EchoServer) -> None:
    url = pages.url("/page?title=Hello%20Playwright")
    data = await execute(agent, f"await page.goto({url!r}); return await page.title();")
    assert ok(data) == "Hello Playwright"
    assert data["tab"]["created"] is False


async def test_page_is_the_tab_the_user_sees(
    agent: AgentClient, pages: EchoServer, cdp_page: PageSession, sandbox: Sandbox
) -> None:
    await cdp_page.navigate(pages.url("/page?title=seen"))
    # Another tab, opened later in the background (first in /json/list): still not the one the user sees.
    async with aiohttp.ClientSession() as http, http.get(sandbox.cdp_url + "/json/version") as response:
        browser_url = (await response.json())["webSocketDebuggerUrl"]
    async with websockets.connect(browser_url) as browser:
        await browser.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": BACKGROUND_TAB}))
        other = json.loads(await browser.recv())["result"]["targetId"]
        try:
            data = await execute(agent, f"return [{HREF}, await page.title(), context === page.context()]")
            assert ok(data) == [pages.url("/page?title=seen"), "seen", True]
            assert data["tab"]["target_id"] != other
        finally:
            await browser.send(
                json.dumps({"id": 2, "method": "Target.closeTarget", "params": {"targetId": other}})
            )
            await browser.recv()


async def test_typescript_annotations(agent: AgentClient) -> None:
    code = """
        interface Point { x: number; y: number }
        type Pair = [string, number];
        const p: Point = { x: 40, y: 2 };
        function sum(a: Point): number { return a.x + a.y; }
        const pair: Pair = ["answer", sum(p)];
        return pair as Pair;
    """
    assert ok(await execute(agent, code)) == ["answer", 42]


async def test_a_thrown_error(agent: AgentClient) -> None:
    data = await execute(agent, "console.log('before'); throw new Error('boom');")
    assert data["success"] is False
    assert data["error"] == "Error: boom"
    assert data["stdout"] == "before\n"
    assert "Error: boom" in data["stderr"]
    assert "worker.mjs" not in data["stderr"]  # the caller's frames, not ours
    assert "result" not in data


async def test_a_syntax_error(agent: AgentClient) -> None:
    data = await execute(agent, "return 1 +;")
    assert data["success"] is False
    assert data["error"].startswith("SyntaxError")


async def test_playwright_errors_come_back_as_messages(agent: AgentClient) -> None:
    data = await execute(agent, "await page.waitForSelector('#never-there', { timeout: 200 });")
    assert data["success"] is False
    assert "TimeoutError" in data["error"] and "#never-there" in data["error"]


async def test_console_output_is_captured(agent: AgentClient) -> None:
    code = """
        console.log('hello', { a: 1 }, [2]);
        console.info('info line');
        console.error('bad thing');
        console.warn('careful');
        return 'done';
    """
    data = await execute(agent, code)
    assert ok(data) == "done"
    assert data["stdout"] == "hello { a: 1 } [ 2 ]\ninfo line\n"
    assert data["stderr"] == "bad thing\ncareful\n"


async def test_results_are_json(agent: AgentClient) -> None:
    assert ok(await execute(agent, "return { n: 1.5, s: 'ü', l: [true, null], nested: { d: 'x' } }")) == {
        "n": 1.5,
        "s": "ü",
        "l": [True, None],
        "nested": {"d": "x"},
    }
    nothing = await execute(agent, "await page.title();")
    assert nothing["success"] is True and "result" not in nothing
    assert ok(await execute(agent, "return null")) is None
    bigint = await execute(agent, "return 10n")
    assert bigint["success"] is False and "JSON" in bigint["error"]


async def test_each_call_has_a_fresh_scope(agent: AgentClient) -> None:
    ok(await execute(agent, "const mine = 1; var alsoMine = 2; return mine + alsoMine"))
    assert ok(await execute(agent, "return typeof mine + ' ' + typeof alsoMine")) == "undefined undefined"


async def test_a_never_yielding_loop_times_out_and_the_next_call_works(agent: AgentClient) -> None:
    data = await execute(agent, "while (true) {}", timeout_sec=1)
    assert data["success"] is False
    assert "timed out after 1 s" in data["error"]
    assert ok(await execute(agent, "return await page.evaluate(() => 6 * 7)")) == 42


async def test_calls_on_one_executor_run_one_at_a_time(agent: AgentClient) -> None:
    first = execute(
        agent,
        "globalThis.owner = 'first'; await new Promise((r) => setTimeout(r, 300)); return globalThis.owner",
    )
    second = execute(agent, "globalThis.owner = 'second'; return globalThis.owner")
    results = await asyncio.gather(first, second)
    assert [ok(r) for r in results] == ["first", "second"]


async def test_named_executor_owns_a_background_tab(
    agent: AgentClient, pages: EchoServer, sandbox: Sandbox, cdp_page: PageSession
) -> None:
    await cdp_page.navigate(pages.url("/page?title=front"))
    seen_before = ok(await execute(agent, f"return {HREF}"))
    url = pages.url("/page?title=executor")
    first = await execute(agent, f"await page.goto({url!r}); return page.url()", executor="tabby")
    assert ok(first) == url
    assert first["tab"]["created"] is True
    again = await execute(agent, "return page.url()", executor="tabby")
    assert ok(again) == url
    assert again["tab"] == {"target_id": first["tab"]["target_id"], "created": False}
    assert ok(await execute(agent, f"return {HREF}")) == seen_before  # the user's tab stays in front

    listing = await agent.get("/playwright/executors")
    assert listing.status == 200, listing
    check(EXECUTORS, listing.json())
    executors = {e["name"]: e for e in listing.json()["executors"]}
    assert listing.json()["executors"][0]["name"] == "default"
    assert executors["tabby"]["target_id"] == first["tab"]["target_id"]
    assert executors["tabby"]["url"] == url
    assert executors["tabby"]["busy"] is False

    deleted = await agent.request("DELETE", "/playwright/executors/tabby")
    assert deleted.status == 204, deleted
    open_ids: set[str] = set()
    for _ in range(100):  # the tab is closing; it leaves the list a moment later
        async with aiohttp.ClientSession() as http, http.get(sandbox.cdp_url + "/json/list") as response:
            open_ids = {t["id"] for t in await response.json()}
        if first["tab"]["target_id"] not in open_ids:
            break
        await asyncio.sleep(0.02)
    assert first["tab"]["target_id"] not in open_ids
    missing = await agent.request("DELETE", "/playwright/executors/tabby")
    assert missing.status == 404, missing


async def test_default_executor_by_name_and_bad_names(agent: AgentClient) -> None:
    assert ok(await execute(agent, "return 'named default'", executor="default")) == "named default"
    reply = await agent.post("/playwright/execute", {"code": "return 1", "executor": "no spaces"})
    assert reply.status == 400, reply
    reply = await agent.post("/playwright/execute", {"code": "return 1", "timeout_sec": 0})
    assert reply.status == 400, reply
    reply = await agent.post("/playwright/execute", {"code": "return 1", "nope": 1})
    assert reply.status == 400, reply


async def test_restarting_the_default_executor(agent: AgentClient) -> None:
    reply = await agent.request("DELETE", "/playwright/executors/default")
    assert reply.status == 204, reply
    assert ok(await execute(agent, "return 'fresh'")) == "fresh"


async def test_a_running_call_fails_when_its_executor_is_deleted(agent: AgentClient) -> None:
    long_call = asyncio.ensure_future(
        execute(agent, "await new Promise((r) => setTimeout(r, 20000)); return 'finished'", executor="doomed")
    )
    for _ in range(200):  # wait until the call runs on the executor
        listing = (await agent.get("/playwright/executors")).json()["executors"]
        if any(e["name"] == "doomed" and e["busy"] for e in listing):
            break
        await asyncio.sleep(0.025)
    deleted = await agent.request("DELETE", "/playwright/executors/doomed")
    assert deleted.status == 204, deleted
    data = await asyncio.wait_for(long_call, 30)
    assert data["success"] is False
    assert "deleted" in data["error"]
