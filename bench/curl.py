"""/curl through Chromium vs a direct aiohttp request to the same loopback server (p50/p90, ratio and the
overhead in ms), beside Chromium's own floor (a tab's fetch() of the same URL, asked over CDP, no agent in
the path), and /curl/raw: a small answer's overhead and a 256 MiB download's throughput vs direct."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from agent.sandbox import Sandbox
from harness.cdp import PageSession

from .common import Timing, measure, report, sandbox

NEW_ORIGINS = 22
MiB = 1024 * 1024
RAW_BYTES = 256 * MiB  # the /curl/raw download
_BLOCK = b"r" * MiB
PLAYWRIGHT_IDLE_S = 1.0


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "path": request.path})


async def _page(request: web.Request) -> web.Response:
    return web.Response(text="<script>window.__ready = true</script>", content_type="text/html")


async def _big(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = RAW_BYTES
    await response.prepare(request)
    for _ in range(RAW_BYTES // MiB):
        await response.write(_BLOCK)
    await response.write_eof()
    return response


async def _download(http: aiohttp.ClientSession, url: str, **kwargs: object) -> None:
    received = 0
    async with http.get(url, **kwargs) as response:  # type: ignore[arg-type]
        async for chunk in response.content.iter_any():
            received += len(chunk)
    if received != RAW_BYTES:
        raise RuntimeError(f"{url}: {received} bytes")


async def _download_small(http: aiohttp.ClientSession, raw_url: str, target: str) -> None:
    async with http.get(raw_url, params={"url": target}) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"/curl/raw: {response.status}")


async def run(box: Sandbox) -> None:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/big", _big)
    app.router.add_get("/page", _page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    target = f"http://127.0.0.1:{port}/echo"
    # Other loopback addresses are other origins: the first /curl to each pays for its hidden document.
    for n in range(2, 2 + NEW_ORIGINS):
        await web.TCPSite(runner, f"127.0.0.{n}", port).start()
    new_origins = iter(f"http://127.0.0.{n}:{port}/echo" for n in range(2, 2 + NEW_ORIGINS))
    await asyncio.sleep(PLAYWRIGHT_IDLE_S * 3)  # the warm Playwright worker disconnects meanwhile (see main)
    tab = await PageSession.open(box.cdp_url)
    await tab.navigate(f"http://127.0.0.1:{port}/page")
    try:
        async with aiohttp.ClientSession() as http:

            async def post(path: str, body: object) -> dict[str, object]:
                async with http.post(box.agent_url + path, json=body) as response:
                    data: dict[str, object] = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"{path}: {response.status} {data}")
                    return data

            async def direct() -> None:
                async with http.get(target) as response:
                    await response.read()

            async def page_fetch() -> None:
                await tab.evaluate("fetch('/echo').then(r => r.text())")

            # Interleaved rounds (direct, the floor, then ours) so that a load spike of the machine hits all.
            ours_ms: list[float] = []
            peer_ms: list[float] = []
            floor_ms: list[float] = []
            for _ in range(4):
                peer_ms += (await measure("direct", 50, direct)).samples_ms
                floor_ms += (await measure("page fetch", 50, page_fetch)).samples_ms
                ours_ms += (await measure("curl", 50, lambda: post("/curl", {"url": target}))).samples_ms
            ours = Timing("POST /curl GET (through Chromium)", ours_ms)
            peer = Timing("aiohttp GET to the same server (direct)", peer_ms)
            floor = Timing("a tab's own fetch() over CDP (Chromium's floor)", floor_ms)
            posted = {"url": target, "method": "POST", "headers": {"X-A": "1"}, "body": "b"}
            rewritten = await measure(
                "POST /curl POST + header + body (Request stage too)", 100, lambda: post("/curl", posted)
            )
            fresh = await measure(
                "POST /curl GET, a new origin each time", NEW_ORIGINS - 2,
                lambda: post("/curl", {"url": next(new_origins)}), warmup=2,
            )  # fmt: skip
            report("curl: GET a loopback URL", ours, [rewritten, fresh, floor, peer])
            print(
                f"/curl overhead over direct: {ours.p50 - peer.p50:.2f} ms p50, {ours.p90 - peer.p90:.2f} ms "
                f"p90 ({ours.p50 / peer.p50:.1f}x direct; target <= 2 ms p50)"
            )
            print(
                f"Chromium's floor over direct: {floor.p50 - peer.p50:.2f} ms p50; /curl over that floor: "
                f"{ours.p50 - floor.p50:.2f} ms p50"
            )

            raw_url = box.agent_url + "/curl/raw"
            raw_small = await measure(
                "GET /curl/raw (a small answer, raw)", 200,
                lambda: _download_small(http, raw_url, target),
            )  # fmt: skip
            print(f"/curl/raw overhead over direct: {raw_small.p50 - peer.p50:.2f} ms p50")
            big = target.replace("/echo", "/big")
            raw_big = await measure(
                f"GET /curl/raw {RAW_BYTES // MiB} MiB (through Chromium)", 3,
                lambda: _download(http, raw_url, params={"url": big}), warmup=1,
            )  # fmt: skip
            direct_big = await measure(
                f"aiohttp GET {RAW_BYTES // MiB} MiB (direct)", 3, lambda: _download(http, big), warmup=1
            )
            report("curl/raw: download throughput", raw_big, [direct_big])
            ours_rate = RAW_BYTES / MiB / (raw_big.p50 / 1000)
            direct_rate = RAW_BYTES / MiB / (direct_big.p50 / 1000)
            print(
                f"/curl/raw download: {ours_rate:.0f} MiB/s vs direct {direct_rate:.0f} MiB/s "
                f"({ours_rate / direct_rate:.0%} of direct)"
            )
    finally:
        await tab.close()
        await runner.cleanup()


def main() -> None:
    # The steady state of a sandbox nobody has asked for Playwright in the last playwright_idle_detach_s (60 s
    # by default): its warm worker has disconnected (connected, Playwright instruments every tab). A short
    # idle time here, and a wait in run(), get there without a minute's wait.
    with sandbox(playwright_idle_detach_s=PLAYWRIGHT_IDLE_S) as box:
        asyncio.run(run(box))
