"""POST /repl against the real Chromium: persistent bindings, reset, timeouts, ordered output, images."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from agent.operation import Operations, build
from agent.playwright.models import ReplRequest
from agent.playwright.operations import OPERATIONS
from agent.sandbox import Sandbox
from agent.services import Services
from agent.spec import Spec, check
from tests.conftest import AgentClient
from tests.helpers.echo_server import EchoServer
from tests.helpers.sdk import SESSION_ID, sdk_client

SPEC = Spec.load()
RESULT = SPEC.schema_validator("BrowserReplResult")
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def repl(agent: AgentClient, code: str, **extra: Any) -> dict[str, Any]:
    reply = await agent.post("/repl", {"code": code, **extra})
    assert reply.status == 200, reply
    data: dict[str, Any] = reply.json()
    check(RESULT, data)
    return data


def texts(data: dict[str, Any]) -> str:
    return "".join(part["text"] for part in data["content"] if part["type"] == "text")


def test_repl_request_gets_the_spec_defaults() -> None:
    validated = Operations(SPEC, Services(), OPERATIONS).validate("executeBrowserRepl", {"code": "1"})
    assert build(ReplRequest, validated) == ReplRequest(code="1", reset=False, timeout_sec=60)


async def test_top_level_bindings_persist_across_calls_until_reset(agent: AgentClient) -> None:
    first = await repl(
        agent, "const a = 40; let b = 1; function twice(x) { return 2 * x } class K {}", reset=True
    )
    assert first["success"] is True, first
    # Also across a call with top-level await (rewritten, declarations kept at the top level).
    second = await repl(agent, "const c = await Promise.resolve(a + b); repl.write(twice(c), typeof K)")
    assert second["success"] is True, second
    assert texts(second) == "82 function"
    assert second["repl_id"] == first["repl_id"] and second["repl_terminated"] is False
    third = await repl(agent, "repl.write(c)")
    assert texts(third) == "41" and third["repl_id"] == first["repl_id"]

    fresh = await repl(agent, "repl.write(typeof a, typeof c)", reset=True)
    assert fresh["success"] is True
    assert texts(fresh) == "undefined undefined"
    assert fresh["repl_id"] != first["repl_id"]
    assert fresh["repl_terminated"] is False


async def test_output_is_ordered_by_channel(agent: AgentClient) -> None:
    data = await repl(
        agent,
        "repl.write('a'); console.log('b'); console.error('c'); await null; repl.write({x: 1}); 'ignored'",
    )
    assert data["success"] is True, data
    assert data["content"] == [
        {"type": "text", "channel": "write", "text": "a"},
        {"type": "text", "channel": "stdout", "text": "b\n"},
        {"type": "text", "channel": "stderr", "text": "c\n"},
        {"type": "text", "channel": "write", "text": "{ x: 1 }"},
    ]
    assert data["content_truncated"] is False


async def test_an_image_output_and_a_screenshot(agent: AgentClient) -> None:
    png = base64.b64encode(PNG_1X1).decode()
    data = await repl(
        agent, f"repl.write('before'); repl.emitImage({png!r}); repl.emitImage(await page.screenshot())"
    )
    assert data["success"] is True, data
    kinds = [part["type"] for part in data["content"]]
    assert kinds == ["text", "image", "image"]
    assert data["content"][1] == {"type": "image", "mime_type": "image/png", "data_b64": png}
    assert base64.b64decode(data["content"][2]["data_b64"]).startswith(b"\x89PNG")


async def test_too_much_output_is_truncated_and_flagged(agent: AgentClient) -> None:
    data = await repl(agent, "for (let i = 0; i < 3; i++) repl.write('x'.repeat(600 * 1024))")
    assert data["success"] is True
    assert data["content_truncated"] is True
    assert len(texts(data)) == 1024 * 1024


async def test_errors_keep_the_repl(agent: AgentClient) -> None:
    before = await repl(agent, "var kept = 'still here'")
    data = await repl(agent, "repl.write('partial'); throw new TypeError('bad thing')")
    assert data["success"] is False
    assert data["error"] == "TypeError: bad thing"
    assert "<repl>" in data["stack"]
    assert texts(data) == "partial"
    assert data["repl_terminated"] is False
    syntax = await repl(agent, "let = = 1")
    assert syntax["success"] is False and syntax["error"].startswith("SyntaxError")
    after = await repl(agent, "repl.write(kept)")
    assert texts(after) == "still here" and after["repl_id"] == before["repl_id"]


async def test_a_timeout_terminates_the_repl_and_the_next_call_gets_a_new_one(agent: AgentClient) -> None:
    first = await repl(agent, "var marker = 1")
    timed_out = await repl(agent, "while (true) {}", timeout_sec=1)
    assert timed_out["success"] is False
    assert "timed out" in timed_out["error"]
    assert timed_out["repl_terminated"] is True
    assert timed_out["repl_id"] == first["repl_id"]
    after = await repl(agent, "repl.write(typeof marker)")
    assert after["success"] is True
    assert texts(after) == "undefined"
    assert after["repl_id"] != first["repl_id"] and after["repl_terminated"] is False


async def test_a_crash_terminates_the_repl(agent: AgentClient) -> None:
    first = await repl(agent, "repl.write(1)")
    crashed = await repl(agent, "process.exit(3)")
    assert crashed["success"] is False
    assert crashed["repl_terminated"] is True and crashed["repl_id"] == first["repl_id"]
    after = await repl(agent, "repl.write(2)")
    assert after["success"] is True and after["repl_id"] != first["repl_id"]


async def test_calls_are_serialized(agent: AgentClient) -> None:
    await repl(agent, "var log = []")
    slow = repl(
        agent, "log.push('slow-start'); await new Promise(r => setTimeout(r, 300)); log.push('slow-end')"
    )

    async def fast() -> dict[str, Any]:
        await asyncio.sleep(0.1)  # sent while the slow call runs
        return await repl(agent, "log.push('fast')")

    results = await asyncio.gather(slow, fast())
    assert all(r["success"] for r in results)
    data = await repl(agent, "repl.write(log.join(','))")
    assert texts(data) == "slow-start,slow-end,fast"


async def test_page_context_browser_cdp_and_help(agent: AgentClient, pages: EchoServer) -> None:
    url = pages.url("/page?title=from%20the%20repl")
    data = await repl(
        agent,
        f"await page.goto({url!r}); repl.write(await page.title(), context === page.context(), "
        "browser.isConnected());"
        "const t = await repl.cdp('Target.getTargets'); repl.write('', t.targetInfos.length > 0);"
        "const r = await repl.pageCdp('Runtime.evaluate', {expression: 'document.title'});"
        "repl.write('', r.result.value)",
    )
    assert data["success"] is True, data
    assert texts(data) == "from the repl true true true from the repl"
    helped = await repl(agent, "repl.help(); repl.help('emitImage')")
    assert "emitImage" in texts(helped) and "write" in texts(helped)
    assert "repl.emitImage(data" in texts(helped)


async def test_dynamic_import_works(agent: AgentClient) -> None:
    data = await repl(agent, "const os = await import('node:os'); repl.write(typeof os.hostname())")
    assert data["success"] is True, data
    assert texts(data) == "string"


async def test_empty_code_needs_reset(agent: AgentClient) -> None:
    reply = await agent.post("/repl", {"code": ""})
    assert reply.status == 400
    assert reply.json()["code"] == "bad_request"
    first = await repl(agent, "repl.write(1)")
    fresh = await repl(agent, "", reset=True)
    assert fresh["success"] is True and fresh["content"] == []
    assert fresh["repl_id"] != first["repl_id"]


async def test_sdk_repl(sandbox: Sandbox) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    async with client:
        first = await client.browsers.repl(SESSION_ID, code="let n = 41", reset=True)
        assert first.success is True
        second = await client.browsers.repl(
            SESSION_ID, code="n++; repl.write(n); repl.emitImage(await page.screenshot())"
        )
        assert second.success is True and second.repl_id == first.repl_id
        assert second.content is not None
        assert second.content[0].type == "text" and second.content[0].text == "42"
        assert second.content[1].type == "image" and second.content[1].mime_type == "image/png"
        assert second.content_truncated is False and second.repl_terminated is False
    assert ("POST", "/repl", 200) in transport.seen
