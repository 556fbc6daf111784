"""Test helpers: an SSE reader of the agent's telemetry, and a loopback site with pages that make events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from agent.spec import Spec
from tests.helpers.echo_server import closed_port

ENVELOPE = Spec.load().schema_validator("BrowserTelemetryEventEnvelope")

Envelope = dict[str, Any]


class Reader:
    """Reads one SSE stream into `envelopes` (each validated against the spec) and `ids` (the id: lines)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.envelopes: list[Envelope] = []
        self.ids: list[int] = []
        self.frames_with_event_field = 0
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(), name="test-sse-reader")

    async def _read(self) -> None:
        buffer = b""
        async for chunk in self.response.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                data = None
                for line in frame.decode().split("\n"):
                    if line.startswith("id: "):
                        self.ids.append(int(line[4:]))
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                    elif line.startswith("event:"):
                        self.frames_with_event_field += 1
                if data is not None:
                    ENVELOPE.validate(data)
                    self.envelopes.append(data)
                    self._changed.set()

    def of(self, type_: str) -> list[Envelope]:
        return [e for e in self.envelopes if e["event"]["type"] == type_]

    async def wait_for(self, check: Callable[[list[Envelope]], bool], timeout: float = 20.0) -> None:
        async def wait() -> None:
            while not check(self.envelopes):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            types = [e["event"]["type"] for e in self.envelopes][-60:]
            raise AssertionError(f"not seen in {timeout}s; last types: {types}") from None

    async def wait_type(
        self, type_: str, count: int = 1, timeout: float = 20.0, **data: Any
    ) -> list[Envelope]:
        def match(e: Envelope) -> bool:
            got = e["event"].get("data", {})
            return e["event"]["type"] == type_ and all(got.get(k) == v for k, v in data.items())

        await self.wait_for(lambda es: sum(map(match, es)) >= count, timeout)
        return [e for e in self.envelopes if match(e)]

    async def close(self) -> None:
        self.response.close()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


@contextlib.asynccontextmanager
async def reading(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Reader]:
    response = await http.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=None))
    assert response.status == 200, await response.text()
    assert response.headers["X-SSE-Content-Type"] == "application/json"
    reader = Reader(response)
    try:
        yield reader
    finally:
        await reader.close()


PAGE = """<!doctype html><html><head><title>telemetry</title></head><body>
<h1 id="big" style="font-size:80px">Largest contentful heading</h1>
<div id="box" style="height:50px">box</div>
<input id="name" name="name"><input id="pw" type="password" name="secret">
<button id="go">Go</button>
<div style="height:3000px"></div>
<script>
console.log("hello", 42, true);
console.error("something bad");
fetch("/data.json", {method: "POST", body: "a=1&b=2",
                     headers: {"Content-Type": "application/x-www-form-urlencoded"}});
fetch("/big.txt");
fetch("/redirect");
fetch("http://127.0.0.1:__CLOSED__/nothing").catch(() => {});
setTimeout(() => { throw new Error("boom from timer"); }, 50);
setTimeout(() => {
  const d = document.createElement("div"); d.style.height = "120px"; d.textContent = "shift";
  document.body.insertBefore(d, document.body.firstChild);
}, 200);
window.__ready = true;
</script></body></html>"""

PLAIN = "<!doctype html><html><body><p>plain</p><script>window.__ready = true;</script></body></html>"


class Site:
    def __init__(self) -> None:
        self.app = web.Application()
        big_json = {"ok": True, "pad": "x" * 20000}

        async def post_json(request: web.Request) -> web.Response:
            return web.json_response(big_json)

        async def get_json(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        async def big_text(request: web.Request) -> web.Response:
            return web.Response(text="é" * 5000, content_type="text/plain")

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound("/data.json")

        async def plain(request: web.Request) -> web.Response:
            return await self._html(PLAIN)

        self.app.router.add_get("/page", self._page)
        self.app.router.add_get("/plain", plain)
        self.app.router.add_get("/flood", self._flood)
        self.app.router.add_post("/data.json", post_json)
        self.app.router.add_get("/data.json", get_json)
        self.app.router.add_get("/big.txt", big_text)
        self.app.router.add_get("/redirect", redirect)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.port = 0

    async def _html(self, text: str) -> web.Response:
        return web.Response(text=text, content_type="text/html")

    async def _page(self, request: web.Request) -> web.Response:
        return await self._html(PAGE.replace("__CLOSED__", str(closed_port())))

    async def _flood(self, request: web.Request) -> web.Response:
        count = int(request.query.get("n", "1000"))
        script = f"for (let i = 0; i < {count}; i++) console.log('flood ' + i); window.__ready = true;"
        return await self._html(f"<!doctype html><html><body><script>{script}</script></body></html>")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.runner.cleanup()
