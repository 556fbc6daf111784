"""The one client of Chromium's DevTools HTTP endpoints (`/json/version`, `/json/list`).

The shared connection discovers the browser websocket through it, the proxy finds the current browser and
its targets, and /health polls it when no connection is followed. Errors are aiohttp's (connection, status)
and ValueError (not JSON); callers decide what each means for them.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class ChromiumJson:
    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http

    async def _get(self, path: str, timeout: float | None) -> Any:
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self._http.get(self.base_url + path, **kwargs) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def version(self, timeout: float | None = None) -> dict[str, Any]:
        """`/json/version`: Browser, Protocol-Version, User-Agent, webSocketDebuggerUrl, …"""
        data = await self._get("/json/version", timeout)
        if not isinstance(data, dict):
            raise ValueError("/json/version is not a JSON object")
        return data

    async def targets(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """`/json/list`: every target, most recently active first (CDP itself has no such order)."""
        data = await self._get("/json/list", timeout)
        if not isinstance(data, list):
            raise ValueError("/json/list is not a JSON array")
        return [t for t in data if isinstance(t, dict)]
