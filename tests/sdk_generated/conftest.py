"""The SDK's generated-test fixtures (`client`, `async_client`, loose and strict) aimed at a real sandbox.

The SDK's own suite runs its generated tests against a mock server at TEST_API_BASE_URL with the public API's
paths (`/browsers/{id}/...`). Here the base URL is the sandbox's agent and the transport strips the
`/browsers/{id}` prefix, as the per-session proxy does. `strict` is the SDK's `_strict_response_validation`:
every answer is validated against the SDK's own types. The SDK's third variant (`http_client: aiohttp`) needs
`httpx_aiohttp`, which is not installed here: it is skipped.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from kernel import AsyncKernel, Kernel

from agent.sandbox import Sandbox

_PREFIX = re.compile(r"^/browsers/[^/]+(?=/)")


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


class StripBrowserPrefixAsync(httpx.AsyncBaseTransport):
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


# max_retries=0: a 5xx must fail the test at once, not be replayed (the SDK would retry it twice).
@pytest.fixture
def client(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[Kernel]:
    strict = request.param
    if not isinstance(strict, bool):
        raise TypeError(f"Unexpected fixture parameter type {type(strict)}, expected {strict}")
    http_client = httpx.Client(transport=StripBrowserPrefixSync(), timeout=60)
    with Kernel(
        base_url=sandbox.agent_url,
        api_key="My API Key",
        _strict_response_validation=strict,
        http_client=http_client,
        max_retries=0,
    ) as kernel:
        yield kernel


@pytest.fixture
async def async_client(request: pytest.FixtureRequest, sandbox: Sandbox) -> AsyncIterator[AsyncKernel]:
    param = request.param
    if isinstance(param, dict):
        pytest.skip("the SDK's aiohttp variant needs httpx_aiohttp, which is not installed")
    if not isinstance(param, bool):
        raise TypeError(f"Unexpected fixture parameter type {type(param)}, expected bool or dict")
    http_client = httpx.AsyncClient(transport=StripBrowserPrefixAsync(), timeout=60)
    async with AsyncKernel(
        base_url=sandbox.agent_url,
        api_key="My API Key",
        _strict_response_validation=param,
        http_client=http_client,
        max_retries=0,
    ) as kernel:
        yield kernel
