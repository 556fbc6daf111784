"""The official Python SDK (PyPI `kernel`) drives `browsers.logs.stream` through a prefix-stripping proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kernel
import pytest

from agent.sandbox import Sandbox
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_streams_logs(sandbox: Sandbox, workdir: Path) -> None:
    log = workdir / "sdk.log"
    log.write_bytes(b"one\ntwo\n")
    client, transport = sdk_client(sandbox.agent_url)
    async with client:
        once = await client.browsers.logs.stream(SESSION_ID, source="path", path=str(log), follow=False)
        events = [event async for event in once]
        assert [(e.event, e.message) for e in events] == [("log", "one"), ("log", "two")]
        assert all(e.timestamp.tzinfo is not None for e in events)

        followed = await client.browsers.logs.stream(SESSION_ID, source="path", path=str(log))
        try:
            with log.open("ab") as out:
                out.write(b"three\n")
            event = await asyncio.wait_for(anext(aiter(followed)), 10)
            assert event.message == "three"
        finally:
            await followed.close()

        chromium = await client.browsers.logs.stream(
            SESSION_ID, source="supervisor", supervisor_process="chromium", follow=False
        )
        assert [event async for event in chromium]

        with pytest.raises(kernel.NotFoundError):
            await client.browsers.logs.stream(SESSION_ID, source="supervisor", supervisor_process="nope")
        with pytest.raises(kernel.BadRequestError):
            await client.browsers.logs.stream(SESSION_ID, source="path")
    assert ("GET", "/logs/stream", 200) in transport.seen
