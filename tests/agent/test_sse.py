"""The shared SSE writer and event buffer, over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.errors import error_middleware
from agent.sse import EventBuffer, last_event_id, stream


def test_buffer_is_bounded_by_count_and_size() -> None:
    buffer: EventBuffer[bytes] = EventBuffer(max_items=3)
    for i in range(5):
        assert buffer.append(b"x") == i + 1
    assert (buffer.first_seq, buffer.last_seq, len(buffer), buffer.dropped) == (3, 5, 3, 2)
    assert [seq for seq, _ in buffer.since(0)] == [3, 4, 5]
    assert [seq for seq, _ in buffer.since(4)] == [5]
    assert buffer.since(5) == []

    sized: EventBuffer[bytes] = EventBuffer(max_items=100, max_bytes=10, size=len)
    for _ in range(4):
        sized.append(b"abcd")
    assert [seq for seq, _ in sized.since(0)] == [3, 4]


async def test_follow_replays_then_waits_then_ends_when_closed() -> None:
    buffer: EventBuffer[str] = EventBuffer(max_items=10)
    buffer.append("a")
    buffer.append("b")
    seen: list[tuple[int, str]] = []

    async def reader() -> None:
        async for item in buffer.follow(after=1):
            seen.append(item)

    task = asyncio.get_running_loop().create_task(reader(), name="reader")
    await asyncio.sleep(0.01)
    assert seen == [(2, "b")]
    buffer.append("c")
    await asyncio.sleep(0.01)
    buffer.close()
    await asyncio.wait_for(task, 1)
    assert seen == [(2, "b"), (3, "c")]


async def _serve(handler: Any) -> AsyncIterator[str]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/s"
    finally:
        await runner.cleanup()


async def test_stream_frames_ids_keepalives_and_resume() -> None:
    buffer: EventBuffer[dict[str, Any]] = EventBuffer(max_items=100)
    for i in range(3):
        buffer.append({"n": i})

    async def handler(request: web.Request) -> web.StreamResponse:
        async def events() -> AsyncIterator[tuple[int | None, Mapping[str, Any]]]:
            async for seq, item in buffer.follow(last_event_id(request)):
                yield seq, item

        return await stream(request, events(), keepalive_s=0.05)

    async for url in _serve(handler):
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Last-Event-ID": "1"}) as response,
        ):
            assert response.headers["Content-Type"] == "text/event-stream"
            chunks = b""
            while chunks.count(b"\n\n") < 2:
                chunks += await response.content.readany()
            await asyncio.sleep(0.12)  # idle: keepalive comments arrive
            buffer.append({"n": 3})
            buffer.close()
            chunks += await response.read()
        text = chunks.decode()
        assert text.startswith('id: 2\ndata: {"n":1}\n\nid: 3\ndata: {"n":2}\n\n')
        assert ": keepalive\n\n" in text
        assert text.endswith('id: 4\ndata: {"n":3}\n\n')
        assert "event:" not in text and "retry:" not in text


async def test_bad_last_event_id_is_a_400() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        last_event_id(request)
        return web.Response()

    async for url in _serve(handler):
        async with aiohttp.ClientSession() as http, http.get(url, headers={"Last-Event-ID": "x"}) as r:
            assert r.status == 400
            assert (await r.json())["code"] == "bad_request"


@pytest.mark.parametrize("header", ["", "0"])
def test_no_last_event_id_means_from_the_start(header: str) -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/s", headers={"Last-Event-ID": header} if header else {})
    assert last_event_id(request) == 0
