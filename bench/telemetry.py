"""Telemetry: events/s through one SSE client (vs paging /telemetry/events), the load time of a page with 200
subresources and console output with telemetry all on vs off, and the agent's CPU while a page logs 1,000
lines/s (telemetry on vs off)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp
import psutil
from aiohttp import web

from agent.sandbox import Sandbox
from harness.cdp import PageSession

from .common import measure, report, sandbox

FILL = 20_000
SUBRESOURCES = 200


def _page() -> str:
    images = "".join(f'<img src="/r/{i}.svg" width="4" height="4">' for i in range(SUBRESOURCES))
    script = "for (let i = 0; i < 50; i++) console.log('line ' + i); window.__ready = true;"
    return f"<!doctype html><html><body>{images}<script>{script}</script></body></html>"


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
TICKER = """<!doctype html><html><body><script>
let n = 0; setInterval(() => { for (let i = 0; i < 10; i++) console.log('tick ' + (n++)); }, 10);
window.__ready = true;</script></body></html>"""


async def _serve() -> tuple[web.AppRunner, str]:
    page = _page()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def ticker(request: web.Request) -> web.Response:
        return web.Response(text=TICKER, content_type="text/html")

    async def resource(request: web.Request) -> web.Response:
        return web.Response(text=SVG, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/page", index)
    app.router.add_get("/ticker", ticker)
    app.router.add_get("/r/{name}", resource)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _configure(http: aiohttp.ClientSession, box: Sandbox, browser: Mapping[str, object]) -> None:
    async with http.put(box.agent_url + "/telemetry", json={"browser": browser}) as response:
        assert response.status == 200, await response.text()


ALL: dict[str, object] = {
    name: {} for name in ("console", "network", "page", "interaction", "control", "connection", "system")
}


async def _read_sse(http: aiohttp.ClientSession, url: str, count: int) -> int:
    got = 0
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                got += 1
                if got == count:
                    return got
    return got


async def run(box: Sandbox) -> None:
    runner, base = await _serve()
    pid = int(box.supervisorctl("pid", "agent").strip())
    agent = psutil.Process(pid)
    try:
        async with aiohttp.ClientSession() as http:
            page = await PageSession.open(box.cdp_url)
            # --- events/s: fill the buffer with real console events, then read them all back ----------
            await _configure(http, box, {"console": {}})
            for _ in range(FILL // 5000):
                await page.evaluate("for (let i = 0; i < 5000; i++) console.log('fill ' + i)")
            await asyncio.sleep(1.0)
            await _configure(http, box, {})  # nothing new while reading
            async with http.get(box.agent_url + "/health") as response:
                held = (await response.json())["telemetry"]["held_events"]

            async def sse() -> None:
                assert await _read_sse(http, box.agent_url + "/telemetry/stream?replay=all", held) == held

            async def paged() -> None:
                offset, got = None, 0
                while True:
                    params = {"limit": "1000", "since": "1h", **({"offset": str(offset)} if offset else {})}
                    async with http.get(box.agent_url + "/telemetry/events", params=params) as response:
                        got += len(await response.json())
                        if response.headers["X-Has-More"] != "true":
                            break
                        offset = int(response.headers["X-Next-Offset"])

            ours = await measure(f"SSE replay of {held} events, one client", 5, sse, warmup=1)
            peer = await measure(f"GET /telemetry/events pages of 1000 ({held} events)", 5, paged, warmup=1)
            report("telemetry: reading every held event", ours, [peer])
            print(f"SSE events/s: {held / (ours.p50 / 1000):,.0f} (target >= 20,000/s)")

            # --- page load with 200 subresources, telemetry all on vs off ------------------------------
            async def load() -> None:
                await page.navigate(base + "/page")

            await _configure(http, box, {})
            off = await measure("load, telemetry off", 15, load)
            await _configure(http, box, ALL)
            on = await measure("load, telemetry all on", 15, load)
            report(
                f"telemetry: page with {SUBRESOURCES} subresources + console output",
                off,
                [on],
                target="all on <= 10 % slower than off",
            )
            print(f"load time, telemetry all on vs off: {on.p50 / off.p50 - 1:+.1%} (p50)")

            # --- agent CPU while a page logs 1,000 lines/s -----------------------------------------------
            choices: list[tuple[str, Mapping[str, object]]] = [
                ("off", {}),
                ("console on", {"console": {}}),
                ("all on", ALL),
            ]
            cpu: dict[str, float] = {}
            print("\n## telemetry: agent CPU while a page logs 1,000 lines/s (5 s each)")
            for label, browser in choices:
                await _configure(http, box, browser)
                await page.navigate(base + "/ticker")
                await asyncio.sleep(0.5)
                before, start = agent.cpu_times(), time.monotonic()
                await asyncio.sleep(5.0)
                after, wall = agent.cpu_times(), time.monotonic() - start
                used = (after.user + after.system - before.user - before.system) / wall * 100
                cpu[label] = used
                ratio = f" ({used / cpu['off']:.1f}x off)" if label != "off" and cpu["off"] > 0 else ""
                print(f"agent CPU, telemetry {label}: {used:.1f} % of one core{ratio}")
            await page.close()
            await _configure(http, box, {"control": {}, "connection": {}, "system": {}})
    finally:
        await runner.cleanup()


def main() -> None:
    with sandbox(telemetry_buffer_events=FILL + 1000) as box:
        asyncio.run(run(box))
