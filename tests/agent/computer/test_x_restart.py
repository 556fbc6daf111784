"""When Xvfb dies and supervisord restarts it, the agent recovers by itself: 503 while X is down (never
500), and screenshots, input and the clipboard work again on fresh X connections without an agent restart.

One private sandbox for the module: every test here kills its X server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox
from tests.conftest import AgentClient, Reply

RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def xbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-xrestart-") as box:
        yield box
    shutil.rmtree(box.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def xagent(xbox: Sandbox) -> AsyncIterator[AgentClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield AgentClient(xbox.agent_url, session)


async def _pid(box: Sandbox, program: str) -> int:
    out = await asyncio.to_thread(box.supervisorctl, "pid", program)
    return int(out.strip())


async def _kill_xvfb(box: Sandbox) -> int:
    """SIGKILL the X server; returns its pid (supervisord starts a new one)."""
    pid = await _pid(box, "xvfb")
    os.kill(pid, signal.SIGKILL)
    return pid


async def _wait_healthy(box: Sandbox, old_xvfb: int | None = None) -> None:
    """Until a new Xvfb runs and /health says X and Chromium are ready again."""
    deadline = time.monotonic() + RECOVERY_S
    while time.monotonic() < deadline:
        try:
            new_pid = await _pid(box, "xvfb")
        except ValueError:
            new_pid = 0  # not running at this instant
        status, _ = await asyncio.to_thread(box.health)
        if new_pid and new_pid != old_xvfb and status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the sandbox did not become healthy again after Xvfb was killed")


def _is_png(body: bytes) -> bool:
    if not body.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    width, height = struct.unpack(">II", body[16:24])
    (crc,) = struct.unpack(">I", body[29:33])
    return bool(width > 0 and height > 0 and zlib.crc32(body[12:29]) == crc)


async def _until_ok(request: Callable[[], Awaitable[Reply]], what: str) -> list[int]:
    """Repeat a request until it answers 200; every answer on the way must be 200 or 503. Returns the
    statuses seen (printed, for the record)."""
    statuses: list[int] = []
    deadline = time.monotonic() + RECOVERY_S
    while True:
        reply = await request()
        statuses.append(reply.status)
        assert reply.status in (200, 503), f"{what}: {reply}"
        if reply.status == 503:
            assert reply.json()["code"] == "unavailable", reply
        if reply.status == 200:
            print(f"{what}: {len(statuses)} attempts, statuses {sorted(set(statuses))}")
            return statuses
        assert time.monotonic() < deadline, f"{what} never recovered: {statuses[-10:]}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def healthy(xbox: Sandbox) -> AsyncIterator[int]:
    """The agent's pid, with the sandbox healthy before and after the test; the agent never restarts."""
    await _wait_healthy(xbox)
    agent_pid = await _pid(xbox, "agent")
    yield agent_pid
    await _wait_healthy(xbox)
    assert await _pid(xbox, "agent") == agent_pid, "the agent was restarted"


async def test_screenshots_recover_after_xvfb_restart(
    xbox: Sandbox, xagent: AgentClient, healthy: int
) -> None:
    first = await xagent.post("/computer/screenshot")
    assert first.status == 200 and _is_png(first.body), first
    old = await _kill_xvfb(xbox)
    await _until_ok(lambda: xagent.post("/computer/screenshot"), "screenshot while X restarts")
    await _wait_healthy(xbox, old)
    for _ in range(3):
        reply = await xagent.post("/computer/screenshot")
        assert reply.status == 200 and _is_png(reply.body), reply
    # JPEG uses the same grabbers
    reply = await xagent.post("/computer/screenshot", headers={"Accept": "image/jpeg"})
    assert reply.status == 200 and reply.body.startswith(b"\xff\xd8"), reply


async def test_input_recovers_after_xvfb_restart(xbox: Sandbox, xagent: AgentClient, healthy: int) -> None:
    assert (await xagent.post("/computer/click_mouse", {"x": 5, "y": 5})).status == 200
    assert (await xagent.post("/computer/type", {"text": "a"})).status == 200
    old = await _kill_xvfb(xbox)
    await _until_ok(lambda: xagent.post("/computer/click_mouse", {"x": 6, "y": 6}), "click while X restarts")
    await _wait_healthy(xbox, old)
    assert (await xagent.post("/computer/click_mouse", {"x": 7, "y": 7})).status == 200
    assert (await xagent.post("/computer/type", {"text": "ok ✓"})).status == 200
    assert (await xagent.post("/computer/move_mouse", {"x": 100, "y": 120, "smooth": False})).status == 200
    reply = await xagent.post("/computer/get_mouse_position")
    assert reply.status == 200 and reply.json() == {"x": 100, "y": 120}, reply


async def test_clipboard_recovers_after_xvfb_restart(
    xbox: Sandbox, xagent: AgentClient, healthy: int
) -> None:
    assert (await xagent.post("/computer/clipboard/write", {"text": "before"})).status == 200
    assert (await xagent.post("/computer/clipboard/read")).json() == {"text": "before"}
    old = await _kill_xvfb(xbox)
    await _until_ok(lambda: xagent.post("/computer/clipboard/read"), "clipboard read while X restarts")
    await _wait_healthy(xbox, old)
    await _until_ok(lambda: xagent.post("/computer/clipboard/write", {"text": "after ✓"}), "clipboard write")
    reply = await xagent.post("/computer/clipboard/read")
    assert reply.status == 200 and reply.json() == {"text": "after ✓"}, reply


async def test_input_in_flight_when_x_dies_is_503(xbox: Sandbox, xagent: AgentClient, healthy: int) -> None:
    assert (await xagent.post("/computer/move_mouse", {"x": 10, "y": 10, "smooth": False})).status == 200
    move = asyncio.ensure_future(
        xagent.post("/computer/move_mouse", {"x": 1800, "y": 1000, "smooth": True, "duration_ms": 3000})
    )
    await asyncio.sleep(0.7)
    assert not move.done(), "the move finished before X was killed"
    old = await _kill_xvfb(xbox)
    reply = await move
    assert reply.status == 503 and reply.json()["code"] == "unavailable", reply
    await _wait_healthy(xbox, old)
    await _until_ok(lambda: xagent.post("/computer/click_mouse", {"x": 8, "y": 8}), "click after the restart")
