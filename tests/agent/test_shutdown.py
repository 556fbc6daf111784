"""Stopping the agent ends every open SSE stream cleanly (the final chunk), never a truncated body."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox


@pytest.fixture
def own_sandbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-shutdown-") as box:
        yield box


async def _read_until(response: aiohttp.ClientResponse, needle: bytes) -> bytes:
    seen = b""
    while needle not in seen:
        chunk = await asyncio.wait_for(response.content.readany(), 20)
        assert chunk, f"the stream ended before {needle!r}: {seen!r}"
        seen += chunk
    return seen


async def _read_to_the_end(response: aiohttp.ClientResponse) -> bytes:
    """The rest of the body; aiohttp raises ClientPayloadError ("Response payload is not completed") when
    a chunked body stops without its final chunk."""
    rest = b""
    async for chunk in response.content.iter_any():
        rest += chunk
    return rest


async def test_stopping_the_agent_ends_open_streams_cleanly(own_sandbox: Sandbox) -> None:
    box = own_sandbox
    base = box.agent_url
    watched = box.state_dir / "fs" / "watched"
    watched.mkdir()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(f"{base}/process/spawn", json={"command": "echo started; sleep 300"}) as reply:
            assert reply.status == 200, await reply.text()
            process_id = (await reply.json())["process_id"]
        async with http.post(f"{base}/fs/watch", json={"path": str(watched)}) as reply:
            assert reply.status == 201, await reply.text()
            watch_id = (await reply.json())["watch_id"]
        output = await http.get(f"{base}/process/{process_id}/stdout/stream")
        events = await http.get(f"{base}/fs/watch/{watch_id}/events")
        assert (output.status, events.status) == (200, 200)
        # Both handlers are inside their streams, having written events.
        await _read_until(output, base64.b64encode(b"started\n"))
        (watched / "file").write_bytes(b"x")
        await _read_until(events, b'"CREATE"')
        # An exec in flight when the agent stops answers with what it has (ended by SIGTERM: 143).
        marker = box.state_dir / "exec-started"
        in_flight = asyncio.ensure_future(
            http.post(f"{base}/process/exec", json={"command": f"touch {marker}; echo partial; sleep 60"})
        )
        for _ in range(200):
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), "the exec never started"

        started = time.monotonic()
        stopping = asyncio.get_running_loop().run_in_executor(None, box.supervisorctl, "stop", "agent")
        rests = await asyncio.wait_for(asyncio.gather(_read_to_the_end(output), _read_to_the_end(events)), 30)
        ended_after = time.monotonic() - started
        assert "stopped" in await stopping
        output.close()
        events.close()
        async with await asyncio.wait_for(in_flight, 30) as answer:
            assert answer.status == 200, await answer.text()
            result = await answer.json()
        assert result["exit_code"] == 143
        assert base64.b64decode(result["stdout_b64"]) == b"partial\n"
    print(f"streams ended {ended_after * 1000:.0f} ms after the stop began")
    for rest in rests:
        assert b"shutting down" in rest
