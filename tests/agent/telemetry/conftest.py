"""Fixtures the telemetry modules share: a loopback site and an HTTP session, one per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from .helpers import Site


@pytest.fixture(scope="module")
async def site() -> AsyncIterator[Site]:
    server = Site()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
