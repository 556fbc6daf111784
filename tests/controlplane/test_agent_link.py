"""The real agent (supervisord + Xvfb + Chromium + agent) reporting to the real gateway over CURVE: HELLO,
health heartbeats, commands through the operation core, lifecycle commands, forwarded Chromium restarts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.control import codec
from agent.control.codec import Frame
from agent.sandbox import Sandbox
from controlplane.gateway import Gateway
from harness.controlplane import linked_sandbox, wait_for


@pytest.fixture(scope="module")
async def linked() -> AsyncIterator[tuple[Gateway, Sandbox, Path]]:
    async with linked_sandbox() as triple:
        gw = triple[0]
        await wait_for(
            lambda: "agent-1" in gw.agents and gw.agents["agent-1"].welcomed, 60, "the agent's HELLO"
        )
        yield triple


async def test_hello_and_health_heartbeats(linked: tuple[Gateway, Sandbox, Path]) -> None:
    gw, box, _ = linked
    conn = gw.agents["agent-1"]
    assert conn.hello["base_url"] == f"http://127.0.0.1:{box.config.port}"
    assert conn.hello["cdp_url"] == f"ws://127.0.0.1:{box.config.cdp_port}"
    assert "getMousePosition" in conn.hello["capabilities"]
    assert "agent.restart_chromium" in conn.hello["capabilities"]
    health = await wait_for(lambda: gw.agents["agent-1"].health.get("memory") and gw.agents["agent-1"].health)
    assert {"cpu_percent", "memory", "disk", "uptime_s", "chromium", "link"} <= set(health)
    assert health["link"]["buffer_fill"] >= 0 and "dropped" in health["link"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{box.config.port}/health") as response,
    ):
        report = await response.json()
    assert report["control"]["state"] == "ready"


async def test_commands_run_through_the_operation_core(linked: tuple[Gateway, Sandbox, Path]) -> None:
    gw, _, _ = linked
    moved = await gw.command("agent-1", "moveMouse", {"x": 101, "y": 123})
    assert moved["ok"] is True
    done = await gw.command("agent-1", "getMousePosition", {})
    assert done["ok"] is True and done["result"] == {"x": 101, "y": 123}
    # The same validation and errors as HTTP.
    bad = await gw.command("agent-1", "moveMouse", {"x": 1})
    assert bad["ok"] is False and bad["status"] == 400 and bad["error"]["code"] == "bad_request"
    missing = await gw.command("agent-1", "noSuchOperation", {})
    assert missing["ok"] is False and missing["error"]["code"] == "unavailable"


async def clipboard(gw: Gateway) -> str:
    done = await gw.command("agent-1", "readClipboard", {})
    assert done["ok"] is True, done
    text: str = done["result"]["text"]
    return text


async def test_a_repeated_cmd_id_runs_once(linked: tuple[Gateway, Sandbox, Path]) -> None:
    gw, _, _ = linked
    first = await gw.command("agent-1", "writeClipboard", {"text": "first"}, cmd_id="once-1")
    assert first["ok"] is True
    assert (await gw.command("agent-1", "writeClipboard", {"text": "second"}))["ok"] is True
    # once-1 again: answered from the agent's cache; running it again would put "first" back.
    again = {"cmd_id": "once-1", "name": "writeClipboard", "args": {"text": "first"}}
    gw.send(gw.agents["agent-1"], Frame(codec.CMD, again))
    await wait_for(lambda: gw.store.answers("once-1") >= 2, what="the cached answer")
    assert await clipboard(gw) == "second"


async def test_past_deadline_command_is_refused(linked: tuple[Gateway, Sandbox, Path]) -> None:
    gw, _, _ = linked
    assert (await gw.command("agent-1", "writeClipboard", {"text": "in time"}))["ok"] is True
    header = {
        "cmd_id": "late-1",
        "name": "writeClipboard",
        "args": {"text": "late"},
        "deadline": time.time() - 5,
    }
    gw.send(gw.agents["agent-1"], Frame(codec.CMD, header))
    result = await wait_for(lambda: gw.store.result("late-1"), what="the refusal")
    assert result["error"]["code"] == "deadline_exceeded"
    assert await clipboard(gw) == "in time"


async def test_restart_chromium_is_a_command_and_its_restart_an_event(
    linked: tuple[Gateway, Sandbox, Path],
) -> None:
    gw, _, _ = linked
    done = await gw.command("agent-1", "agent.restart_chromium", {}, timeout=60)
    assert done["ok"] is True

    def reconnected() -> bool:
        kinds = [e["kind"] for e in gw.store.events("agent-1", limit=10_000)]
        return (
            "chromium.disconnected" in kinds
            and kinds.index("chromium.disconnected") < len(kinds) - 1
            and ("chromium.connected" in kinds[kinds.index("chromium.disconnected") :])
        )

    await wait_for(reconnected, 60, "Chromium's restart events")
