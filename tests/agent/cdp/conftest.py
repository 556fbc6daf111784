"""A sandbox of this directory's own, for tests that restart or kill Chromium (never the shared one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-cdp-", playwright_max_executors=1) as box:
        yield box
