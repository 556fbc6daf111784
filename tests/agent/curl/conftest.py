"""Fixtures for the /curl tests: a loopback server to talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.agent.curl.echo_server import EchoServer


@pytest.fixture(scope="session")
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()
