"""The CDP plane: /playwright/execute on a warm worker vs a Node process per call (a per-request runner), and
/curl through Chromium vs a direct aiohttp request to the same loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.playwright.service import bundled_driver
from agent.sandbox import Sandbox

from .common import Timing, measure, report, sandbox

NEW_ORIGINS = 22

# What a per-request runner does: start Node, load playwright-core, connect over CDP, run the code, exit.
COLD_RUNNER = """
const { chromium } = await import(process.env.CORE);
const browser = await chromium.connectOverCDP(process.env.CDP_URL);
const context = browser.contexts()[0];
const page = context.pages()[0] ?? (await context.newPage());
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const fn = new AsyncFunction("page", "context", "browser", "return 1");
const result = await fn(page, context, browser);
process.stdout.write(JSON.stringify({ success: true, result }));
await browser.close();
"""


MiB = 1024 * 1024
RAW_BYTES = 256 * MiB  # the /curl/raw download
_BLOCK = b"r" * MiB


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "path": request.path})


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


async def run(box: Sandbox) -> None:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/big", _big)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    target = f"http://127.0.0.1:{port}/echo"
    # Other loopback addresses are other origins: the first /curl to each pays for its hidden document.
    for n in range(2, 2 + NEW_ORIGINS):
        await web.TCPSite(runner, f"127.0.0.{n}", port).start()
    new_origins = iter(f"http://127.0.0.{n}:{port}/echo" for n in range(2, 2 + NEW_ORIGINS))
    node, core = bundled_driver()
    script = Path(tempfile.mkdtemp(prefix="agent-bench-cdp-")) / "cold.mjs"
    script.write_text(COLD_RUNNER)
    env = {**os.environ, "CORE": str(core), "CDP_URL": box.cdp_url}
    try:
        async with aiohttp.ClientSession() as http:

            async def post(path: str, body: object) -> dict[str, object]:
                async with http.post(box.agent_url + path, json=body) as response:
                    data: dict[str, object] = await response.json()
                    if response.status != 200 or data.get("success") is False:
                        raise RuntimeError(f"{path}: {response.status} {data}")
                    return data

            async def cold() -> None:
                process = await asyncio.create_subprocess_exec(
                    str(node), str(script), env=env, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                out, _ = await process.communicate()
                if process.returncode != 0 or json.loads(out)["result"] != 1:
                    raise RuntimeError(f"cold runner failed: {out[:200]!r}")

            async def direct() -> None:
                async with http.get(target) as response:
                    await response.read()

            # --- playwright/execute ---
            warm = await measure(
                "POST /playwright/execute 'return 1' (warm worker)", 200,
                lambda: post("/playwright/execute", {"code": "return 1"}),
            )  # fmt: skip
            per_call = await measure("new Node + connectOverCDP per call (cold)", 15, cold, warmup=1)
            report(
                "playwright execute: return 1",
                warm,
                [per_call],
                "warm p50 <= 30 ms and >= 10x faster than cold",
            )
            title = await measure(
                "POST /playwright/execute 'return await page.title()'", 100,
                lambda: post("/playwright/execute", {"code": "return await page.title()"}),
            )  # fmt: skip
            print(f"(page.title() on the warm worker: p50 {title.p50:.2f} ms, p90 {title.p90:.2f} ms)")

            # --- curl ---
            ours = await measure(
                "POST /curl GET (through Chromium)", 200, lambda: post("/curl", {"url": target})
            )
            posted = {"url": target, "method": "POST", "headers": {"X-A": "1"}, "body": "b"}
            rewritten = await measure(
                "POST /curl POST + header + body (Request stage too)", 100, lambda: post("/curl", posted)
            )
            fresh = await measure(
                "POST /curl GET, a new origin each time", NEW_ORIGINS - 2,
                lambda: post("/curl", {"url": next(new_origins)}), warmup=2,
            )  # fmt: skip
            peer = await measure("aiohttp GET to the same server (direct)", 200, direct)
            report(
                "curl: GET a loopback URL",
                ours,
                [rewritten, fresh, peer],
                "overhead over direct <= 15 ms p50",
            )
            overhead = Timing("overhead", [ours.p50 - peer.p50])
            print(f"/curl overhead over direct: {overhead.p50:.2f} ms p50 (target <= 2 ms)")

            # --- curl/raw ---
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
            print(
                f"/curl/raw download: {RAW_BYTES / MiB / (raw_big.p50 / 1000):.0f} MiB/s vs direct "
                f"{RAW_BYTES / MiB / (direct_big.p50 / 1000):.0f} MiB/s"
            )
    finally:
        await runner.cleanup()
        shutil.rmtree(script.parent, ignore_errors=True)  # leave nothing behind in /tmp


async def _download_small(http: aiohttp.ClientSession, raw_url: str, target: str) -> None:
    async with http.get(raw_url, params={"url": target}) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"/curl/raw: {response.status}")


def main() -> None:
    with sandbox() as box:
        asyncio.run(run(box))
