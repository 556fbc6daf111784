"""Long input actions: sent to X in chunks (linear time, flat memory), and a client that leaves stops its
action between chunks, so the input thread is free again at once.

A private sandbox with Chromium stopped: the events go through the real Xvfb, but no browser has to digest
100,000 keystrokes (Chromium takes ~500 per second), so the figures are the agent's own.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.rss import PeakRss
from harness.sandboxes import private_sandbox
from tests.conftest import AgentClient

MIB = 2**20


@pytest.fixture(scope="module")
def fbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-flood-") as box:
        box.supervisorctl("stop", "chromium")
        yield box
    shutil.rmtree(box.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def fagent(fbox: Sandbox) -> AsyncIterator[AgentClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=200)) as session:
        yield AgentClient(fbox.agent_url, session)


def _agent_pid(box: Sandbox) -> int:
    return int(box.supervisorctl("pid", "agent").strip())


@pytest.mark.parametrize("size", [40_000, 100_000])
async def test_typing_a_long_text_is_linear_and_memory_stays_flat(
    fbox: Sandbox, fagent: AgentClient, size: int
) -> None:
    """Unflushed, python-xlib's send buffer made 40,000 characters take 34 s and more (quadratic) and
    held every queued request in memory."""
    text = ("the quick brown fox jumps over the lazy dog 0123456789 " * 2000)[:size]
    with PeakRss(_agent_pid(fbox)) as rss:
        started = time.monotonic()
        reply = await fagent.post("/computer/type", {"text": text})
        took = time.monotonic() - started
    assert reply.status == 200, reply
    print(f"typing {size} characters took {took:.2f} s; the agent's RSS grew {rss.growth / MIB:.1f} MiB")
    assert rss.growth < 10 * MIB


async def _leave_then_next(agent: AgentClient, path: str, body: object) -> float:
    """Post a long request, give up on it after 100 ms, and time the next small action from then."""
    with pytest.raises(TimeoutError):
        await agent.post(path, body, timeout=aiohttp.ClientTimeout(total=0.1))
    left = time.monotonic()
    reply = await agent.post("/computer/get_mouse_position")
    freed = time.monotonic() - left
    assert reply.status == 200, reply
    return freed


async def test_client_that_leaves_a_long_type_frees_the_input_thread(
    fbox: Sandbox, fagent: AgentClient
) -> None:
    with PeakRss(_agent_pid(fbox)) as rss:
        freed = await _leave_then_next(fagent, "/computer/type", {"text": "z" * 100_000})
    print(
        f"next action answered {freed * 1000:.0f} ms after the client left; "
        f"RSS grew {rss.growth / MIB:.1f} MiB"
    )
    assert freed < 2.0
    assert rss.growth < 10 * MIB


async def test_client_that_leaves_a_scroll_batch_frees_the_input_thread(fagent: AgentClient) -> None:
    scroll = {"type": "scroll", "scroll": {"x": 960, "y": 540, "delta_y": 1000}}
    freed = await _leave_then_next(fagent, "/computer/batch", {"actions": [scroll] * 100})
    print(f"next action answered {freed * 1000:.0f} ms after the client left the scroll batch")
    assert freed < 2.0


async def test_client_that_leaves_a_keymap_change_frees_the_input_thread(fagent: AgentClient) -> None:
    """Characters missing from the keymap are typed after remapping spare keycodes, with short waits for
    clients to reload the map; those waits stop too when the client leaves."""
    text = "".join(chr(0x4E00 + i) for i in range(5000))  # 5000 distinct CJK characters: many remaps
    freed = await _leave_then_next(fagent, "/computer/type", {"text": text})
    print(f"next action answered {freed * 1000:.0f} ms after the client left a remapping type")
    assert freed < 2.0
    # The input thread is in a sane state: a plain key still goes out.
    assert (await fagent.post("/computer/press_key", {"keys": ["Escape"]})).status == 200
    await asyncio.sleep(0)
