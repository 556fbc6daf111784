"""An install whose Chromium does not come back in time is undone: a sandbox of its own whose readiness wait
is far too short for any restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox
from tests.agent.extensions.test_extensions import extension_zip, form, installed, upload


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-extensions-rollback-", extensions_ready_timeout_s=0.05) as sandbox:
        yield sandbox


async def test_an_install_that_times_out_is_rolled_back(box: Sandbox) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        status, body = await upload(http, box, form(("late", extension_zip("ext: late"))))
        assert status == 500, body
        assert body["code"] == "internal_error" and "put back" in body["message"], body
        assert await installed(http, box) == []
        assert not (box.state_dir / "extensions" / "late").exists()
        assert not list(box.state_dir.glob(".extensions-incoming-*"))
        # Chromium was started again without it, and answers.
        for _ in range(300):
            async with http.get(box.cdp_url + "/json/version") as response:
                if response.status == 200 and "Browser" in json.loads(await response.read()):
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Chromium did not come back")
