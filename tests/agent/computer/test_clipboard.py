"""Clipboard both ways with Chromium: what we write is what ctrl+v pastes; what Chromium copies we read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psutil

from agent.sandbox import Sandbox
from tests.conftest import AgentClient, RecorderPage
from tests.helpers.poll import settles_to


def _clipboard(agent: AgentClient) -> Callable[[], Awaitable[str]]:
    async def read() -> str:
        text: str = (await agent.post("/computer/clipboard/read")).json()["text"]
        return text

    return read


async def test_written_text_is_what_ctrl_v_pastes(page: RecorderPage, agent: AgentClient) -> None:
    text = "clip héllo € ✓ 日本"
    reply = await agent.post("/computer/clipboard/write", {"text": text})
    assert reply.status == 200, reply
    await page.focus_input()
    await agent.post("/computer/press_key", {"keys": ["ctrl+v"]})
    assert await settles_to(page.value, text) == text


async def test_text_copied_in_chromium_is_what_read_returns(page: RecorderPage, agent: AgentClient) -> None:
    text = "copied ✓ ß 日本 from the page"
    await agent.post("/computer/clipboard/write", {"text": "something else"})
    await page.focus_input()
    await agent.post("/computer/type", {"text": text})
    assert await settles_to(page.value, text) == text
    await agent.post("/computer/press_key", {"keys": ["ctrl+a", "ctrl+c"]})
    assert await settles_to(_clipboard(agent), text) == text


async def test_large_text_round_trips_through_chromium(page: RecorderPage, agent: AgentClient) -> None:
    """More than one X request holds: the INCR protocol, both directions."""
    text = ("0123456789abcdef✓" * 20000)[:300000]
    assert (await agent.post("/computer/clipboard/write", {"text": text})).status == 200
    await page.focus_input()
    await agent.post("/computer/press_key", {"keys": ["ctrl+v"]})
    assert await settles_to(page.value, text) == text
    await agent.post("/computer/clipboard/write", {"text": "small"})
    await agent.post("/computer/press_key", {"keys": ["ctrl+a", "ctrl+c"]})
    assert await settles_to(_clipboard(agent), text) == text


async def test_clipboard_leaves_no_helper_processes(agent: AgentClient, sandbox: Sandbox) -> None:
    for index in range(20):
        await agent.post("/computer/clipboard/write", {"text": f"round {index}"})
        assert (await agent.post("/computer/clipboard/read")).json() == {"text": f"round {index}"}
    agent_pid = int(sandbox.supervisorctl("pid", "agent").strip())
    children = psutil.Process(agent_pid).children(recursive=True)
    assert not [c for c in children if c.status() == psutil.STATUS_ZOMBIE]
    assert not [p for p in psutil.process_iter(["name"]) if p.info["name"] == "xclip"]


async def test_bad_clipboard_bodies(agent: AgentClient) -> None:
    reply = await agent.post("/computer/clipboard/write", {"text": None})
    assert reply.status == 400 and "text" in reply.json()["message"]
    reply = await agent.post("/computer/clipboard/read", {"text": "x"})
    assert reply.status == 400 and "unknown field" in reply.json()["message"]
