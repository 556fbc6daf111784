"""The shared SSE writer and event buffer, over a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.errors import error_middleware
from agent.sse import EventBuffer, last_event_id, stream


def _seqs(entries: Iterable[tuple[int, Any]]) -> list[int]:
    return [seq for seq, _ in entries]


def test_buffer_is_bounded_by_count_and_size() -> None:
    buffer: EventBuffer[bytes] = EventBuffer(max_items=3)
    for i in range(5):
        assert buffer.append(b"x") == i + 1
    assert (buffer.first_seq, buffer.last_seq, len(buffer), buffer.dropped) == (3, 5, 3, 2)

    sized: EventBuffer[bytes] = EventBuffer(max_items=100, max_bytes=10, size=len)
    for _ in range(4):
        sized.append(b"abcd")
    assert _seqs(sized.since(0)) == [3, 4]
    assert sized.held_bytes == 8


# (after, items since, missed_before) on a buffer of max 3 that has had 5 appended (holds 3, 4, 5).
@pytest.mark.parametrize(
    ("after", "seqs", "missed"),
    [
        (0, [3, 4, 5], 2),  # from the start: 1 and 2 are gone
        (1, [3, 4, 5], 1),
        (2, [3, 4, 5], 0),  # exactly before first_seq: nothing missed
        (3, [4, 5], 0),  # exactly at first_seq
        (4, [5], 0),
        (5, [], 0),  # at last_seq
        (9, [], 0),  # beyond it (a Last-Event-ID from another life): nothing, nothing missed
    ],
)
def test_since_and_missed_before_at_the_boundaries(after: int, seqs: list[int], missed: int) -> None:
    buffer: EventBuffer[str] = EventBuffer(max_items=3)
    for i in range(5):
        buffer.append(str(i + 1))
    assert [(seq, item) for seq, item in buffer.since(after)] == [(s, str(s)) for s in seqs]
    assert buffer.missed_before(after) == missed


async def test_an_empty_buffer() -> None:
    buffer: EventBuffer[str] = EventBuffer(max_items=3)
    assert (buffer.first_seq, buffer.last_seq, len(buffer)) == (1, 0, 0)
    assert list(buffer.since(0)) == []
    assert buffer.missed_before(0) == 0
    buffer.close()
    follower = buffer.follower(0)
    assert [entry async for entry in follower] == []
    assert follower.missed == 0


# Resuming from `after` on a buffer of max 3 that has had 5 appended: what a follower yields and misses.
@pytest.mark.parametrize(
    ("after", "seqs", "missed"),
    [(0, [3, 4, 5], 2), (2, [3, 4, 5], 0), (3, [4, 5], 0), (5, [], 0), (-1, [3, 4, 5], 2)],
)
async def test_follower_resume_counts_what_was_dropped(after: int, seqs: list[int], missed: int) -> None:
    buffer: EventBuffer[int] = EventBuffer(max_items=3)
    for i in range(5):
        buffer.append(i + 1)
    buffer.close()
    follower = buffer.follower(after)
    assert _seqs([entry async for entry in follower]) == seqs
    assert follower.missed == missed
    assert _seqs([entry async for entry in buffer.follow(after)]) == seqs  # the plain generator agrees


async def test_a_follower_that_falls_behind_is_told_how_many_it_missed() -> None:
    buffer: EventBuffer[int] = EventBuffer(max_items=4)
    buffer.append(1)
    follower = buffer.follower(0)
    assert await anext(follower) == (1, 1)
    for i in range(2, 12):  # 10 more while it is away: only 8..11 are still held
        buffer.append(i)
    assert await anext(follower) == (8, 8)
    assert follower.missed == 6
    buffer.append(12)
    buffer.close()
    assert _seqs([entry async for entry in follower]) == [9, 10, 11, 12]
    assert (follower.missed, follower.cursor) == (6, 12)


async def test_a_follower_waiting_at_the_end_gets_new_items_then_ends_on_close() -> None:
    buffer: EventBuffer[int] = EventBuffer(max_items=4)
    follower = buffer.follower(0)
    waiting = asyncio.get_running_loop().create_task(anext(follower), name="waiting-follower")
    await asyncio.sleep(0)
    assert not waiting.done()
    buffer.append(7)
    assert await asyncio.wait_for(waiting, 1) == (1, 7)
    waiting = asyncio.get_running_loop().create_task(anext(follower), name="waiting-follower")
    await asyncio.sleep(0)
    buffer.close()  # close while it waits: it ends, it does not hang
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    assert follower.missed == 0


def test_the_byte_bound_drops_several_and_measures_each_item_once() -> None:
    calls: list[bytes] = []

    def size(item: bytes) -> int:
        calls.append(item)
        return len(item)

    buffer: EventBuffer[bytes] = EventBuffer(max_items=100, max_bytes=10, size=size)
    for _ in range(4):
        buffer.append(b"ab")
    buffer.append(b"abcdefgh")  # 16 bytes: the three oldest go to get back to 10
    assert (buffer.first_seq, buffer.dropped, buffer.held_bytes) == (4, 3, 10)
    assert _seqs(buffer.since(0)) == [4, 5]
    buffer.append(b"x" * 50)  # alone over the bound: the newest item is still held
    assert (_seqs(buffer.since(0)), buffer.held_bytes) == ([6], 50)
    assert len(calls) == 6  # once per append, never again on drop
    with pytest.raises(ValueError, match="size function"):
        EventBuffer(max_items=10, max_bytes=10)


def test_since_matches_a_plain_list_model_through_drops_and_compaction() -> None:
    rng = random.Random(9)
    buffer: EventBuffer[bytes] = EventBuffer(max_items=50, max_bytes=400, size=len)
    model: list[tuple[int, bytes]] = []
    for seq in range(1, 3001):
        item = bytes(rng.randrange(1, 40))
        assert buffer.append(item) == seq
        model.append((seq, item))
        while len(model) > 50 or (sum(len(i) for _, i in model) > 400 and len(model) > 1):
            model.pop(0)
        if seq % 97 == 0:
            for after in range(seq - 60, seq + 2):
                assert list(buffer.since(after)) == [e for e in model if e[0] > after]
    assert (buffer.first_seq, len(buffer)) == (model[0][0], len(model))
    assert len(buffer._items) <= 2 * 50 + 64  # the ring is compacted: memory stays bounded


class CountingList(list[Any]):
    """Storage that counts how many slots are read from it, by index, slice or iteration."""

    touched = 0

    def __getitem__(self, index: Any) -> Any:
        got = super().__getitem__(index)
        type(self).touched += len(got) if isinstance(index, slice) else 1
        return got

    def __iter__(self) -> Iterator[Any]:
        type(self).touched += len(self)
        return super().__iter__()

    def copy(self) -> list[Any]:
        type(self).touched += len(self)
        return super().copy()


async def test_since_and_followers_touch_only_the_items_they_return() -> None:
    buffer: EventBuffer[int] = EventBuffer(max_items=100_000)
    for i in range(150_000):
        buffer.append(i)
    buffer._items = CountingList(buffer._items)
    CountingList.touched = 0

    tail = buffer.since(buffer.last_seq - 1)
    assert not isinstance(tail, list)  # lazy: nothing is read until asked for
    assert CountingList.touched == 0
    assert _seqs(tail) == [buffer.last_seq]
    assert CountingList.touched == 1

    CountingList.touched = 0
    for _ in range(10_000):
        assert _seqs(buffer.since(buffer.last_seq - 3)) == [
            buffer.last_seq - 2,
            buffer.last_seq - 1,
            buffer.last_seq,
        ]
    assert CountingList.touched == 30_000

    CountingList.touched = 0  # a reader that stops early (like batching by frame size) wastes little
    for _ in islice(buffer.since(buffer.first_seq), 1000):
        pass
    assert CountingList.touched <= 2 * 1000

    CountingList.touched = 0
    buffer.close()
    follower = buffer.follower(buffer.last_seq - 2)
    assert _seqs([entry async for entry in follower]) == [buffer.last_seq - 1, buffer.last_seq]
    assert CountingList.touched == 2


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
