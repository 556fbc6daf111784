"""A minimal CDP client for tests: drive and inspect the page the user sees (not part of the agent)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import websockets


class CDPError(RuntimeError):
    pass


class PageSession:
    """One websocket to a page target; call(), evaluate(), navigate()."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="test-cdp-reader")

    @classmethod
    async def open(cls, cdp_http: str) -> PageSession:
        async with aiohttp.ClientSession() as http, http.get(cdp_http + "/json/list") as response:
            targets = await response.json()
        pages = [t for t in targets if t["type"] == "page"]
        if not pages:
            async with (
                aiohttp.ClientSession() as http,
                http.put(cdp_http + "/json/new?about:blank") as response,
            ):
                pages = [await response.json()]
        ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        session = cls(ws)
        await session.call("Page.enable")
        await session.call("Page.bringToFront")
        return session

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                self._events.put_nowait(message)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        # The old document is marked not ready; the new one marks itself ready (window.__ready = true).
        await self.evaluate("window.__ready = false")
        await self.call("Page.navigate", url=url)
        for _ in range(400):
            if await self.evaluate("document.readyState === 'complete' && window.__ready === true"):
                return
            await asyncio.sleep(0.025)
        raise CDPError(f"page {url} did not load")

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
