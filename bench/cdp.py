"""The CDP plane: /playwright/execute on a warm worker vs a Node process per call (a per-request runner), and
the first call after the worker's idle disconnect (`playwright_idle_detach_s`, short here). /curl is
`bench/curl.py`'s."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import aiohttp

from agent.playwright.service import bundled_driver
from agent.sandbox import Sandbox

from .common import measure, report, sandbox

IDLE_S = 0.5  # the sandbox's playwright_idle_detach_s: the warm calls come faster than that

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


async def run(box: Sandbox) -> None:
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
            after_idle = await measure(
                "the first call after an idle disconnect (connects again)", 10,
                lambda: post("/playwright/execute", {"code": "return 1"}),
                warmup=0, pause_s=IDLE_S * 4,  # the worker disconnects during each pause
            )  # fmt: skip
            report("playwright execute after idle: return 1", warm, [after_idle, per_call])

    finally:
        shutil.rmtree(script.parent, ignore_errors=True)  # leave nothing behind in /tmp


def main() -> None:
    with sandbox(playwright_idle_detach_s=IDLE_S) as box:
        asyncio.run(run(box))
