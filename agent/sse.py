"""The one SSE writer every stream uses, and the bounded, sequenced buffer streams resume from.

Frames are `id: <seq>` (where a sequence exists) + `data: <json>`; nothing else, because the official SDK
parses only `data:` lines and breaks on a frame that has `event:` or `retry:` and no data. A `:` comment
keeps idle connections alive every 15 s. A client that reconnects with `Last-Event-ID: <seq>` gets every
event after <seq> that is still in the buffer.

When the agent stops, every open stream ends cleanly (its final zero-length chunk) in aiohttp's
`on_shutdown`, before the server's shutdown timeout would cancel the handlers mid-body (`install`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

from aiohttp import web

from .errors import BadRequest

T = TypeVar("T")
KEEPALIVE_S = 15.0


class EventBuffer(Generic[T]):
    """A bounded ring of sequenced items (seq starts at 1) that streams follow.

    Bounded by count and, optionally, by total size (`size(item)`); the oldest items go first. Used from
    the event loop's thread only.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None, size: Callable[[T], int] | None = None):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size or (lambda _: 0)
        self._items: collections.deque[tuple[int, T]] = collections.deque()
        self._bytes = 0
        self._next_seq = 1
        self._closed = False
        self._changed = asyncio.Event()
        self.dropped = 0

    @property
    def last_seq(self) -> int:
        """The seq of the newest item ever appended (0 if none)."""
        return self._next_seq - 1

    @property
    def first_seq(self) -> int:
        """The seq of the oldest item still held (last_seq + 1 when empty)."""
        return self._items[0][0] if self._items else self._next_seq

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: T) -> int:
        if self._closed:
            raise RuntimeError("append to a closed EventBuffer")
        seq = self._next_seq
        self._next_seq += 1
        self._items.append((seq, item))
        self._bytes += self._size(item)
        while len(self._items) > self.max_items or (
            self.max_bytes is not None and self._bytes > self.max_bytes and len(self._items) > 1
        ):
            _, old = self._items.popleft()
            self._bytes -= self._size(old)
            self.dropped += 1
        self._wake()
        return seq

    def close(self) -> None:
        """No more items will come: followers end once they have what is left."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def since(self, after: int) -> list[tuple[int, T]]:
        """Items with seq > after that are still held (older ones are gone for good)."""
        if not self._items or after >= self.last_seq:
            return []
        start = max(0, after + 1 - self.first_seq)
        return list(self._items)[start:]

    async def follow(self, after: int = 0) -> AsyncIterator[tuple[int, T]]:
        """Everything after `after`, then each new item as it comes, until closed and drained."""
        cursor = after
        while True:
            changed = self._changed
            for seq, item in self.since(cursor):
                cursor = seq
                yield seq, item
            if self._closed and cursor >= self.last_seq:
                return
            if self.since(cursor):
                continue
            await changed.wait()


class OpenStreams:
    """The SSE streams being written now, so that shutdown can end each one cleanly."""

    def __init__(self) -> None:
        self._stops: set[asyncio.Event] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._stops)

    def add(self) -> asyncio.Event:
        stop = asyncio.Event()
        if self.closing:  # a request that arrived during shutdown ends at once
            stop.set()
        self._stops.add(stop)
        return stop

    def discard(self, stop: asyncio.Event) -> None:
        self._stops.discard(stop)

    def end_all(self) -> None:
        self.closing = True
        for stop in self._stops:
            stop.set()


OPEN_STREAMS_KEY = web.AppKey("sse_open_streams", OpenStreams)


def install(app: web.Application) -> None:
    """Keep track of the app's open streams and end them all when it shuts down. aiohttp runs on_shutdown
    before it waits for (then cancels) the handlers still running, so each stream writes its end first."""
    streams = OpenStreams()
    app[OPEN_STREAMS_KEY] = streams

    async def end_streams(app: web.Application) -> None:
        streams.end_all()

    app.on_shutdown.append(end_streams)


def last_event_id(request: web.Request) -> int:
    """The `Last-Event-ID` a reconnecting client sent (0 when none)."""
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Last-Event-ID must be an event sequence number, got {raw!r}") from None
    if value < 0:
        raise BadRequest("Last-Event-ID must not be negative")
    return value


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


def frame(data: Mapping[str, Any] | list[Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


class Batch(list[tuple[int | None, Mapping[str, Any]]]):
    """Events that are ready together (a log file read in bulk), yielded as one item: written as one chunk,
    without a round of the event loop per event."""


async def stream(
    request: web.Request,
    events: AsyncIterator[tuple[int | None, Mapping[str, Any]] | Batch],
    *,
    keepalive_s: float = KEEPALIVE_S,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Write `events` as SSE until they end, the client goes away or the agent shuts down."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-SSE-Content-Type": "application/json",
            **(headers or {}),
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    streams = request.config_dict.get(OPEN_STREAMS_KEY)
    stop = streams.add() if streams is not None else asyncio.Event()
    stopping = loop.create_task(stop.wait(), name="sse-stop")
    iterator = aiter(events)
    pending: asyncio.Task[tuple[int | None, Mapping[str, Any]] | Batch] | None = None
    try:
        while True:
            if pending is None:
                pending = loop.create_task(_next(iterator), name="sse-next-event")
            done, _ = await asyncio.wait(
                {pending, stopping}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                await response.write(b": the agent is shutting down\n\n")
                break
            if not done:
                await response.write(b": keepalive\n\n")
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            if isinstance(item, Batch):
                if item:
                    await response.write(b"".join(frame(data, event_id) for event_id, data in item))
            else:
                await response.write(frame(item[1], item[0]))
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away: a clean end
    finally:
        stopping.cancel()
        if streams is not None:
            streams.discard(stop)
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
    with contextlib.suppress(ConnectionResetError, ConnectionError):
        await response.write_eof()
    return response
