"""One private sandbox for the reliability suite: fuzzing and hostile input must not disturb the session's
sandbox that the other tests share. Its fs root is a temp dir (the sandbox's default `state_dir/fs`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox

# upload_zip's extraction cap, lowered so that a 1000:1 bomb is refused after a few hundred KB of upload
# (the default, 2 GiB, is the same check at a size a test should not write).
MAX_EXTRACT_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="session")
def rbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-reliability-", fs_max_extract_bytes=MAX_EXTRACT_BYTES) as box:
        yield box
