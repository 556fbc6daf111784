"""The official `kernel` SDK aimed at the agent as the per-session proxy serves it (prefix stripped)."""

from __future__ import annotations

import re

import httpx
from kernel import AsyncKernel

SESSION_ID = "test-session"
_PREFIX = re.compile(r"^/browsers/[^/]+(?=/)")


class StripBrowserPrefix(httpx.AsyncBaseTransport):
    """Does what the control plane's per-session proxy does, and remembers what went through."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = _PREFIX.sub("", request.url.path)
        request.url = request.url.copy_with(path=path)
        response = await self._inner.handle_async_request(request)
        self.seen.append((request.method, path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class StripBrowserPrefixSync(httpx.BaseTransport):
    """The per-session proxy's prefix stripping, for the SDK's synchronous client."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = _PREFIX.sub("", request.url.path)
        request.url = request.url.copy_with(path=path)
        response = self._inner.handle_request(request)
        self.seen.append((request.method, path, response.status_code))
        return response

    def close(self) -> None:
        self._inner.close()


def sdk_client(agent_url: str) -> tuple[AsyncKernel, StripBrowserPrefix]:
    transport = StripBrowserPrefix()
    client = AsyncKernel(
        api_key="test-key",
        base_url=agent_url,
        http_client=httpx.AsyncClient(transport=transport, timeout=60),
        max_retries=0,
    )
    return client, transport
