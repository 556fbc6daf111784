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
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, cast

from aiohttp import web

from .errors import AtCapacity, BadRequest

T = TypeVar("T")
KEEPALIVE_S = 15.0


class EventBuffer(Generic[T]):
    """A bounded ring of sequenced items (seq starts at 1) that streams follow.

    Seqs are contiguous, so the item with seq s sits at `head + s - first_seq` of a list: lookup is O(1)
    and `since`/followers touch only the items they return. Bounded by count and, optionally, by total
    size (`size(item)`, measured once on append); the oldest items go first, but the newest item is
    always held, even alone over `max_bytes`. A follower that falls behind the oldest held item is told
    how many it missed (`Follower.missed`). Used from the event loop's thread only.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None, size: Callable[[T], int] | None = None):
        if max_bytes is not None and size is None:
            raise ValueError("max_bytes needs a size function")
        self.max_items = max(1, max_items)  # the newest item is always held
        self.max_bytes = max_bytes
        self._size = size
        # A list ring of (seq, item): slots before _head are dropped (None), compacted once they are half
        # the list. The tuples are built once, on append, so reads hand them out as they are.
        self._items: list[tuple[int, T] | None] = []
        self._sizes: list[int] = []  # parallel to _items when sized, so a drop subtracts what was added
        self._head = 0
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
        return self._next_seq - (len(self._items) - self._head)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def held_bytes(self) -> int:
        """Total size of the items held (0 without a size function)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items) - self._head

    def append(self, item: T) -> int:
        if self._closed:
            raise RuntimeError("append to a closed EventBuffer")
        seq = self._next_seq
        self._next_seq += 1
        self._items.append((seq, item))
        if self._size is not None:
            size = self._size(item)
            self._sizes.append(size)
            self._bytes += size
        while len(self) > self.max_items or (
            self.max_bytes is not None and self._bytes > self.max_bytes and len(self) > 1
        ):
            self._drop_oldest()
        self._wake()
        return seq

    def _drop_oldest(self) -> None:
        self._items[self._head] = None  # let the item go now, not at compaction
        if self._size is not None:
            self._bytes -= self._sizes[self._head]
        self._head += 1
        self.dropped += 1
        # Amortised O(1): the list is rebuilt only after as many drops as it has live items.
        if self._head >= 64 and self._head * 2 >= len(self._items):
            del self._items[: self._head]
            if self._size is not None:
                del self._sizes[: self._head]
            self._head = 0

    def _entry(self, seq: int) -> tuple[int, T]:
        """The held (seq, item) for first_seq <= seq <= last_seq: O(1)."""
        return cast(tuple[int, T], self._items[self._head + seq - self.first_seq])

    def close(self) -> None:
        """No more items will come: followers end once they have what is left."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def missed_before(self, after: int) -> int:
        """How many items after `after` are gone for good (dropped before anyone read them from here)."""
        return max(0, self.first_seq - 1 - max(0, after))

    def since(self, after: int) -> Iterator[tuple[int, T]]:
        """Items with seq > after that are still held, up to the newest one now (older ones are gone for
        good): a lazy iterator over just those items, found by seq, so it costs only what is read from it.
        Meant to be read without awaiting in between; a reader that waits should use a follower."""
        return self._walk(max(after + 1, self.first_seq), self.last_seq)

    def _walk(self, seq: int, end: int) -> Iterator[tuple[int, T]]:
        # Slices that double in length (up to 256): C-speed copies for long reads, yet at most about twice
        # what the caller reads is ever touched (a reader that stops early wastes at most its last slice).
        chunk = 16
        while seq <= end:
            seq = max(seq, self.first_seq)  # items may be dropped between slices: skip what is gone
            if seq > end:
                return
            stop = min(end, seq + chunk - 1)
            start = self._head + seq - self.first_seq
            yield from cast(list[tuple[int, T]], self._items[start : start + stop - seq + 1])
            seq = stop + 1
            chunk = min(chunk * 2, 256)

    def follower(self, after: int = 0) -> Follower[T]:
        """An async iterator of everything after `after`, then each new item, until closed and drained;
        its `missed` counts the items that were dropped before it got to them."""
        return Follower(self, after)

    async def follow(self, after: int = 0) -> AsyncIterator[tuple[int, T]]:
        """Everything after `after`, then each new item as it comes, until closed and drained (items
        dropped before it got to them are skipped; `follower()` counts them)."""
        async for entry in Follower(self, after):
            yield entry


class Follower(Generic[T]):
    """One reader walking an `EventBuffer` forward by seq. `cursor` is the last seq it yielded (or
    skipped); `missed` grows by the number of items between the cursor and the buffer's oldest item
    whenever those were dropped before it read them (including on a resume from an old Last-Event-ID)."""

    def __init__(self, buffer: EventBuffer[T], after: int) -> None:
        self.buffer = buffer
        self.cursor = max(0, after)
        self.missed = 0

    def __aiter__(self) -> Follower[T]:
        return self

    async def __anext__(self) -> tuple[int, T]:
        # One O(1) lookup per item and no slice held between items, so a slow reader keeps nothing alive
        # that the buffer has dropped.
        buffer = self.buffer
        while True:
            first = buffer.first_seq
            if self.cursor + 1 < first:
                self.missed += first - 1 - self.cursor
                self.cursor = first - 1
            if self.cursor < buffer.last_seq:
                self.cursor += 1
                return buffer._entry(self.cursor)
            if buffer.closed:
                raise StopAsyncIteration
            await buffer._changed.wait()

    async def aclose(self) -> None:
        """Nothing to release; here so that it can stand where an async generator did."""


class OpenStreams:
    """The SSE streams being written now, so that shutdown can end each one cleanly."""

    def __init__(self, max_streams: int = 0) -> None:
        self._stops: set[asyncio.Event] = set()
        self.closing = False
        self.max_streams = max_streams  # 0 = no cap

    def check(self) -> None:
        """503 at_capacity (Retry-After) when `max_streams` are open: each holds a task, buffers and a
        socket for as long as its client likes, so their number is bounded."""
        if self.max_streams and len(self._stops) >= self.max_streams:
            raise AtCapacity(
                f"too many event streams open (at most {self.max_streams}, AGENT_SSE_MAX_STREAMS); "
                "close one or retry later"
            )

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


def install(app: web.Application, max_streams: int = 0) -> None:
    """Keep track of the app's open streams (at most `max_streams`, 0 = any number) and end them all when
    it shuts down. aiohttp runs on_shutdown before it waits for (then cancels) the handlers still running,
    so each stream writes its end first."""
    streams = OpenStreams(max_streams)
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


class Encoded(bytes):
    """Frames encoded already (ids, data and blank lines included), written as they are."""


async def stream(
    request: web.Request,
    events: AsyncIterator[tuple[int | None, Mapping[str, Any]] | Batch | Encoded],
    *,
    keepalive_s: float = KEEPALIVE_S,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Write `events` as SSE until they end, the client goes away or the agent shuts down (503 before
    anything is written when the cap on open streams is reached)."""
    streams = request.config_dict.get(OPEN_STREAMS_KEY)
    if streams is not None:
        streams.check()
        stop = streams.add()  # taken before the first await, so requests racing past the check count
    else:
        stop = asyncio.Event()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-SSE-Content-Type": "application/json",
            **(headers or {}),
        }
    )
    try:
        await response.prepare(request)
    except BaseException:
        if streams is not None:
            streams.discard(stop)
        raise
    loop = asyncio.get_running_loop()
    stopping = loop.create_task(stop.wait(), name="sse-stop")
    iterator = aiter(events)
    pending: asyncio.Task[tuple[int | None, Mapping[str, Any]] | Batch | Encoded] | None = None
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
            if isinstance(item, Encoded):
                await response.write(item)
            elif isinstance(item, Batch):
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
