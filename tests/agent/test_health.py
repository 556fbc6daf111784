"""/health: Chromium's readiness follows the shared DevTools connection, not one slow /json/version poll."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from agent.cdp.connection import CDPConnection
from agent.health.service import Readiness
from agent.sandbox import Sandbox
from harness.sandboxes import free_port, private_config, private_sandbox
from tests.agent.cdp.test_restart import chromium_browser_process


class FakeDevTools:
    """Chromium's DevTools endpoints as far as the connection needs them; /json/version can be made slow."""

    def __init__(self) -> None:
        self.port = free_port()
        self.version_delay_s = 0.0
        self.sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/json/version", self._version)
        app.router.add_get("/devtools/browser/fake", self._browser)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()

    async def drop_connections(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def _version(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.version_delay_s)
        return web.json_response(
            {
                "Browser": "Chrome/999.0",
                "Protocol-Version": "1.3",
                "User-Agent": "fake",
                "webSocketDebuggerUrl": f"ws://127.0.0.1:{self.port}/devtools/browser/fake",
            }
        )

    async def _browser(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            self.sockets.discard(ws)
        return ws


@pytest.fixture
async def devtools() -> AsyncIterator[FakeDevTools]:
    server = FakeDevTools()
    await server.start()
    yield server
    await server.stop()


async def eventually(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("never happened")
        await asyncio.sleep(0.02)


async def test_a_slow_poll_does_not_flip_readiness_while_the_websocket_is_open(
    devtools: FakeDevTools,
) -> None:
    config = private_config("agent-test-health-", chromium_cdp_port=devtools.port, ready_poll_s=0.05)
    connection = CDPConnection(config.chromium_cdp_url)
    readiness = Readiness(config)
    unfollow = readiness.follow(connection)
    tasks = [
        asyncio.create_task(connection.run(), name="test-cdp"),
        asyncio.create_task(readiness.run(), name="test-readiness"),
    ]
    try:
        await eventually(lambda: readiness.chromium.ready)
        assert readiness.report()["chromium"]["browser"] == "Chrome/999.0"
        # Busy: /json/version takes 3 s (the old poll gave it 1 s), the websocket stays open.
        devtools.version_delay_s = 3.0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert readiness.chromium.ready, readiness.report()["chromium"]
            await asyncio.sleep(0.05)
        # Gone: the websocket closes, and Chromium is not ready at once (not at the next poll).
        await devtools.drop_connections()
        await eventually(lambda: not readiness.chromium.ready, timeout=2.0)
        assert "no DevTools connection" in readiness.report()["chromium"]["detail"]
        # Back: the connection comes again, and so does readiness.
        devtools.version_delay_s = 0.0
        await eventually(lambda: readiness.chromium.ready)
    finally:
        unfollow()
        await connection.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            config.state_dir.rmdir()


# --- the real thing ---


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-health-") as sandbox:
        yield sandbox
    shutil.rmtree(sandbox.state_dir, ignore_errors=True)  # the helper leaves it


async def health_status(http: aiohttp.ClientSession, box: Sandbox) -> tuple[int, dict[str, object]]:
    async with http.get(box.agent_url + "/health") as response:
        return response.status, await response.json()


async def test_health_stays_200_through_an_input_flood(box: Sandbox) -> None:
    stop = asyncio.Event()

    async def flood(http: aiohttp.ClientSession, n: int) -> None:
        while not stop.is_set():
            body = {"x": 100 + 37 * n % 1500, "y": 100 + 53 * n % 800, "smooth": True, "duration_ms": 400}
            async with http.post(box.agent_url + "/computer/move_mouse", json=body) as response:
                assert response.status == 200, await response.text()
            n += 7

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        workers = [asyncio.create_task(flood(http, n), name=f"test-flood-{n}") for n in range(8)]
        try:
            statuses = []
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline:
                statuses.append((await health_status(http, box))[0])
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*workers)
        assert set(statuses) == {200}, statuses


async def test_health_is_503_while_chromium_is_down_and_200_after(box: Sandbox) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        assert (await health_status(http, box))[0] == 200
        chromium_browser_process(box).send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            status, report = await health_status(http, box)
            if status == 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert status == 503, report
        assert report["code"] == "unavailable" and "chromium" in str(report["message"]), report
        deadline = time.monotonic() + 60
        while status != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            status, report = await health_status(http, box)
        assert status == 200, report
