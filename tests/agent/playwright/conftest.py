"""Fixtures for the Playwright tests: a loopback server with pages to visit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.agent.curl.echo_server import EchoServer


@pytest.fixture(scope="session")
async def pages() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()
