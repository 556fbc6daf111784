"""POST /repl round trip: `repl.write(1)` in the persistent runtime vs /playwright/execute's warm worker
(the other way to run code next to the browser) and a state-keeping call (a binding read back)."""

from __future__ import annotations

import asyncio

import aiohttp

from agent.sandbox import Sandbox

from .common import measure, report, sandbox


async def run(box: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:

        async def post(path: str, body: object) -> dict[str, object]:
            async with http.post(box.agent_url + path, json=body) as response:
                data: dict[str, object] = await response.json()
                if response.status != 200 or data.get("success") is False:
                    raise RuntimeError(f"{path}: {response.status} {data}")
                return data

        await post("/repl", {"code": "let n = 0", "reset": True})
        write = {"code": "repl.write(1)"}
        ours = await measure("POST /repl 'repl.write(1)'", 200, lambda: post("/repl", write))
        state = await measure("POST /repl 'n++; repl.write(n)' (a kept binding)", 200,
                              lambda: post("/repl", {"code": "n++; repl.write(n)"}))  # fmt: skip
        execute = await measure("POST /playwright/execute 'return 1' (warm worker)", 200,
                                lambda: post("/playwright/execute", {"code": "return 1"}))  # fmt: skip
        report("repl: round trip", ours, [state, execute], "repl.write(1) p50 <= 10 ms")


def main() -> None:
    with sandbox() as box:
        asyncio.run(run(box))
