"""service_crashed from supervisord's event listener: real kill -9 of Chromium and of the agent itself."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox

from .helpers import ENVELOPE, reading


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-telemetry-services-") as sandbox:
        yield sandbox


def pid_of(box: Sandbox, program: str) -> int:
    return int(box.supervisorctl("pid", program).strip())


async def crashes(http: aiohttp.ClientSession, box: Sandbox) -> list[dict[str, Any]]:
    params = {"type": "service_crashed", "since": "1h", "limit": "1000"}
    async with http.get(box.agent_url + "/telemetry/events", params=params) as response:
        assert response.status == 200, await response.text()
        envelopes: list[dict[str, Any]] = await response.json()
    for envelope in envelopes:
        ENVELOPE.validate(envelope)
    return [e["event"] for e in envelopes]


async def test_kill_9_of_chromium_gives_service_crashed_and_a_restart_does_not(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with reading(http, box.agent_url + "/telemetry/stream?type=service_crashed") as reader:
        pid = pid_of(box, "chromium")
        os.kill(pid, signal.SIGKILL)
        got = (await reader.wait_type("service_crashed", service_name="chromium", timeout=30))[0]["event"]
    assert got["category"] == "system"
    assert got["data"] == {"phase": "running", "service_name": "chromium", "pid": pid}
    assert got["source"]["kind"] == "local_process"
    assert got["source"]["event"] == "PROCESS_STATE_EXITED"
    for _ in range(300):  # supervisord starts it again (autorestart)
        if box.cdp_version() is not None and pid_of(box, "chromium") not in (0, pid):
            break
        await asyncio.sleep(0.1)
    # An intentional restart is STOPPED, not EXITED: nothing is reported.
    await asyncio.to_thread(box.supervisorctl, "restart", "chromium")
    await asyncio.sleep(2.0)  # four polls of the listener's file
    assert [e["data"]["service_name"] for e in await crashes(http, box)] == ["chromium"]


async def test_the_agents_own_kill_9_is_reported_once_it_is_back(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    pid = pid_of(box, "agent")
    os.kill(pid, signal.SIGKILL)
    for _ in range(300):
        if pid_of(box, "agent") not in (0, pid):
            break
        await asyncio.sleep(0.1)
    await asyncio.to_thread(box.wait_ready, 60)
    for _ in range(100):
        events = await crashes(http, box)
        if events:
            break
        await asyncio.sleep(0.1)
    # The new agent's buffer starts empty: it holds what the listener saw since the old agent's cursor, i.e.
    # the agent's own exit, and not again Chromium's (already reported by the old agent).
    assert [e["data"] for e in events] == [{"phase": "running", "service_name": "agent", "pid": pid}]
