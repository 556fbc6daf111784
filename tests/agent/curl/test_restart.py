"""/curl while Chromium restarts (supervisorctl restart, or a crash): 503 to retry, never a 500."""

from __future__ import annotations

import asyncio
import collections
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox
from tests.agent.cdp.test_restart import chromium_browser_process, generation, wait_for_generation
from tests.helpers.echo_server import EchoServer


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-curl-restart-") as sandbox:
        yield sandbox
    shutil.rmtree(sandbox.state_dir, ignore_errors=True)  # the helper leaves it


async def curl_until(
    box: Sandbox, echo_server: EchoServer, stop: asyncio.Event, answers: list[tuple[int, Any]]
) -> None:
    """POST /curl again and again (fast and slow answers) until `stop` is set."""
    paths = ["/echo?n=1", "/slow?s=0.3", "/echo?n=2"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        n = 0
        while not stop.is_set():
            body = {"url": echo_server.url(paths[n % len(paths)]), "timeout_ms": 10000}
            n += 1
            async with http.post(box.agent_url + "/curl", json=body) as response:
                answers.append((response.status, await response.json(content_type=None)))


async def test_curl_during_chromium_restarts_is_never_a_500(box: Sandbox, echo_server: EchoServer) -> None:
    answers: list[tuple[int, Any]] = []
    for how in ("restart", "kill", "restart"):
        before = await generation(box)
        assert before > 0
        stop = asyncio.Event()
        workers = [asyncio.create_task(curl_until(box, echo_server, stop, answers)) for _ in range(6)]
        try:
            await asyncio.sleep(0.5)  # requests in flight when Chromium goes
            if how == "restart":
                await asyncio.to_thread(box.supervisorctl, "restart", "chromium")
            else:
                chromium_browser_process(box).send_signal(signal.SIGKILL)
            await wait_for_generation(box, before)
            await asyncio.sleep(1.0)  # and while the new browser settles
        finally:
            stop.set()
            await asyncio.gather(*workers)
    statuses = collections.Counter(status for status, _ in answers)
    assert set(statuses) <= {200, 502, 503}, [a for a in answers if a[0] not in (200, 502, 503)][:5]
    for status, body in answers:
        if status != 200:
            assert {"code", "message"} <= set(body), body  # a spec Error
    print("curl answers during restarts:", dict(statuses))
    assert statuses[200] > 0
    # It works again afterwards, every time.
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        for n in range(5):
            while True:
                body = {"url": echo_server.url(f"/echo?after={n}")}
                async with http.post(box.agent_url + "/curl", json=body) as response:
                    reply = await response.json()
                if response.status == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert response.status == 200 and reply["status"] == 200, reply
