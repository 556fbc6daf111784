"""A sandbox of this directory's own, for tests that restart or kill Chromium (never the shared one)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.config import Config
from agent.sandbox import Sandbox
from tests.agent.curl.echo_server import EchoServer
from tests.conftest import free_display, free_port


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[Sandbox]:
    config = Config(
        port=free_port(),
        cdp_port=free_port(),
        chromium_cdp_port=free_port(),
        display=free_display(),
        state_dir=Path(tempfile.mkdtemp(prefix="agent-test-cdp-")),
        playwright_max_executors=1,
    )
    box = Sandbox(config)
    box.start()
    try:
        box.wait_ready(timeout=90)
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="module")
async def echo_server() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.stop()
