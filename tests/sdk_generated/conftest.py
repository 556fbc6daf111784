"""The SDK's generated-test fixtures (`client`, `async_client`, loose and strict) aimed at a real sandbox.

The SDK's own suite runs its generated tests against a mock server at TEST_API_BASE_URL with the public API's
paths (`/browsers/{id}/...`). Here the base URL is the sandbox's agent and the transport strips the
`/browsers/{id}` prefix, as the per-session proxy does. `strict` is the SDK's `_strict_response_validation`:
every answer is validated against the SDK's own types. The SDK's third variant (`http_client: aiohttp`) needs
`httpx_aiohttp`, which is not installed here: it is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from kernel import AsyncKernel, Kernel

from agent.sandbox import Sandbox
from tests.helpers.sdk import StripBrowserPrefix, StripBrowserPrefixSync


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
    http_client = httpx.AsyncClient(transport=StripBrowserPrefix(), timeout=60)
    async with AsyncKernel(
        base_url=sandbox.agent_url,
        api_key="My API Key",
        _strict_response_validation=param,
        http_client=http_client,
        max_retries=0,
    ) as kernel:
        yield kernel
