"""Fixtures for the Playwright tests: the session-wide loopback server, under the name the tests use."""

from __future__ import annotations

import pytest

from tests.helpers.echo_server import EchoServer


@pytest.fixture
def pages(echo_server: EchoServer) -> EchoServer:
    return echo_server
