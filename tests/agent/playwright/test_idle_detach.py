"""An execute worker with no call for `playwright_idle_detach_s` disconnects from Chromium (Playwright
instruments every tab while connected) and its next call connects again and works; the tabs stay. The REPL
worker stays connected. A sandbox of its own with a 1 s idle time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import psutil
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox

pytestmark = pytest.mark.timeout(180)

IDLE_S = 1.0
WITHIN_S = 20.0  # generous for a busy 2-core machine


@pytest.fixture(scope="module")
def ibox() -> Iterator[Sandbox]:
    with private_sandbox("agent-pw-idle-", playwright_idle_detach_s=IDLE_S) as box:
        yield box


@pytest.fixture
async def http(ibox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=ibox.agent_url, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        yield session


def worker(box: Sandbox, *, repl: bool) -> psutil.Process | None:
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    for child in agent.children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if any(part.endswith("worker.mjs") for part in cmdline) and ("--expose-internals" in cmdline) == repl:
            return child
    return None


def connections_to_chromium(box: Sandbox, process: psutil.Process) -> int:
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == box.config.chromium_cdp_port and c.status == psutil.CONN_ESTABLISHED
    )


async def wait_connections(box: Sandbox, *, repl: bool, count: int) -> None:
    deadline = time.monotonic() + WITHIN_S
    seen: int | None = None
    while time.monotonic() < deadline:
        process = worker(box, repl=repl)
        if process is not None:
            seen = connections_to_chromium(box, process)
            if seen == count:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the {'REPL' if repl else 'execute'} worker has {seen} connections to Chromium")


async def post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(path, json=body) as response:
        data: dict[str, Any] = await response.json()
        assert response.status == 200, data
        return data


async def page_ids(box: Sandbox, http: aiohttp.ClientSession) -> set[str]:
    async with http.get(f"http://127.0.0.1:{box.config.chromium_cdp_port}/json/list") as response:
        return {t["id"] for t in await response.json() if t["type"] == "page"}


async def test_an_idle_execute_worker_disconnects_and_its_next_call_connects_again(
    ibox: Sandbox, http: aiohttp.ClientSession
) -> None:
    first = await post(http, "/playwright/execute", {"code": "return await page.evaluate('1 + 1')"})
    assert first["success"] is True and first["result"] == 2, first
    await wait_connections(ibox, repl=False, count=0)
    tabs = await page_ids(ibox, http)
    assert first["tab"]["target_id"] in tabs  # disconnecting closed no tab
    again = await post(http, "/playwright/execute", {"code": "return await page.evaluate('2 + 3')"})
    assert again["success"] is True and again["result"] == 5, again
    assert again["tab"]["target_id"] == first["tab"]["target_id"]
    assert await page_ids(ibox, http) >= tabs
    await wait_connections(ibox, repl=False, count=0)


async def test_the_repl_worker_stays_connected(ibox: Sandbox, http: aiohttp.ClientSession) -> None:
    await post(http, "/repl", {"code": "const kept = await page.evaluate('7')"})
    await wait_connections(ibox, repl=True, count=1)
    await asyncio.sleep(IDLE_S * 3)
    await wait_connections(ibox, repl=True, count=1)
    reply = await post(http, "/repl", {"code": "repl.write(kept, await page.evaluate('8'))"})
    assert reply["success"] is True, reply
    assert reply["content"] == [{"type": "text", "channel": "write", "text": "7 8"}], reply
