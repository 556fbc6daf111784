"""The telemetry collector's core: the configuration, the one ring buffer, and the queries over it.

Every producer (the CDP monitor, the api_call middleware, the CDP proxy hook, the supervisord watcher) calls
`emit(type, data, ...)`. An event of a category that is off is dropped right there; the others get the next
seq (process-monotonic, from 1) and land in one `EventBuffer`, bounded by count and by bytes. An envelope
larger than `max_event_bytes` keeps its type and loses its data (`truncated: true`); an event that cannot
be encoded is stored the same way and counted: no producer's mistake stops the collector.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from ..errors import BadRequest
from ..sse import Encoded, EventBuffer
from .models import CATEGORY_OF, CDP_CATEGORIES, EventsPage, ListTelemetryEventsRequest, split_list

log = logging.getLogger(__name__)

ConfigListener = Callable[[frozenset[str]], None]
# When no `since` is given, an ascending page starts this long ago (SDK 0.131's documented default).
DEFAULT_WINDOW_S = 300.0
FRAMES_PER_WRITE = 512


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One stored event: its envelope (as served) plus what filters read without parsing it."""

    type: str
    category: str
    ts: int
    envelope: dict[str, Any]
    size: int
    frame: bytes  # the SSE frame (`id:` + `data:`), encoded once here: streams write it as it is


def now_us() -> int:
    return time.time_ns() // 1000


class TelemetryService:
    def __init__(
        self,
        enabled: Iterable[str],
        *,
        max_events: int = 8192,
        max_bytes: int = 64 * 1024 * 1024,
        max_event_bytes: int = 1024 * 1024,
    ) -> None:
        self._enabled = frozenset(enabled)
        self.max_event_bytes = max_event_bytes
        self.buffer: EventBuffer[Item] = EventBuffer(max_events, max_bytes, size=lambda item: item.size)
        self._listeners: list[ConfigListener] = []
        self.encode_errors = 0
        self.oversized = 0
        self.filtered = 0  # events of a category that was off

    # --- configuration ----------------------------------------------------------------------------------

    @property
    def enabled(self) -> frozenset[str]:
        return self._enabled

    @property
    def cdp_enabled(self) -> frozenset[str]:
        """The CDP categories that are on (the monitor runs, and `monitor` events flow, while any is)."""
        return self._enabled & frozenset(CDP_CATEGORIES)

    def is_on(self, category: str) -> bool:
        if category == "monitor":
            return bool(self.cdp_enabled)
        return category in self._enabled

    def set_enabled(self, enabled: Iterable[str]) -> frozenset[str]:
        new = frozenset(enabled)
        if new != self._enabled:
            self._enabled = new
            for listener in list(self._listeners):
                try:
                    listener(new)
                except Exception:
                    log.exception("telemetry config listener failed")
        return self._enabled

    def on_config(self, listener: ConfigListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- recording --------------------------------------------------------------------------------------

    def emit(
        self,
        type_: str,
        data: Mapping[str, Any] | None,
        *,
        kind: str = "cdp",
        event: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ts: int | None = None,
        truncated: bool = False,
    ) -> int | None:
        """Record one event; its seq, or None when its category is off."""
        category = CATEGORY_OF.get(type_, "control")
        if not self.is_on(category):
            self.filtered += 1
            return None
        return self.record(type_, data, kind=kind, event=event, metadata=metadata, ts=ts, truncated=truncated)

    def record(
        self,
        type_: str,
        data: Mapping[str, Any] | None,
        *,
        kind: str = "cdp",
        event: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ts: int | None = None,
        truncated: bool = False,
    ) -> int:
        """Record one event whatever the configuration says (emit() checks it)."""
        category = CATEGORY_OF.get(type_, "control")
        source: dict[str, Any] = {"kind": kind}
        if event is not None:
            source["event"] = event
        if metadata:
            source["metadata"] = dict(metadata)
        body: dict[str, Any] = {"ts": ts if ts is not None else now_us(), "type": type_, "category": category}
        body["source"] = source
        if data is not None:
            body["data"] = data
        if truncated:
            body["truncated"] = True
        seq = self.buffer.last_seq + 1  # what append() will assign: the loop's thread only
        envelope = {"seq": seq, "event": body}
        try:
            text = json.dumps(envelope, separators=(",", ":"), allow_nan=False)
            size = len(text)
        except (TypeError, ValueError, RecursionError):
            self.encode_errors += 1
            size = -1
        if size < 0 or size > self.max_event_bytes:
            # Keep the type (a reader still learns it happened), lose the data.
            self.oversized += size > 0
            body.pop("data", None)
            body["truncated"] = True
            text = json.dumps(envelope, separators=(",", ":"), default=str)
            size = len(text)
        frame = b"id: %d\ndata: %s\n\n" % (seq, text.encode("utf-8", "surrogatepass"))
        appended = self.buffer.append(Item(type_, category, body["ts"], envelope, size, frame))
        assert appended == seq
        return seq

    def status(self) -> dict[str, Any]:
        return {
            "enabled": sorted(self._enabled),
            "last_seq": self.buffer.last_seq,
            "held_events": len(self.buffer),
            "held_bytes": self.buffer.held_bytes,
            "evicted": self.buffer.dropped,
            "oversized": self.oversized,
            "encode_errors": self.encode_errors,
        }

    def close(self) -> None:
        self.buffer.close()

    # --- reading ----------------------------------------------------------------------------------------

    async def follow(
        self, after: int, types: frozenset[str] | None = None
    ) -> AsyncIterator[tuple[int | None, Mapping[str, Any]]]:
        """Every held event after `after`, then each new one; a reader that fell behind the buffer sees
        the gap in seqs (the evicted events are gone)."""
        async for seq, item in self.buffer.follower(after):
            if types is None or item.type in types:
                yield seq, item.envelope

    async def follow_frames(
        self, after: int, types: frozenset[str] | None = None
    ) -> AsyncGenerator[Encoded, None]:
        """`follow()` as ready-made SSE: each item is the frames of every matching event held now after
        the last one given (at most FRAMES_PER_WRITE), so a stream writes one chunk per round of the event
        loop, not one per event."""
        buffer = self.buffer
        follower = buffer.follower(after)
        async for first, head in follower:
            frames = [head.frame] if types is None or head.type in types else []
            for seq, item in buffer.since(first):
                if len(frames) >= FRAMES_PER_WRITE:
                    break
                if types is None or item.type in types:
                    frames.append(item.frame)
                follower.cursor = seq
            if frames:
                yield Encoded(b"".join(frames))

    def start_after(self, last_event_id: int, replay: str | None) -> int:
        """Where a new stream starts: after Last-Event-ID when given, the oldest held event with
        replay=all, else only events from now on."""
        if last_event_id > 0:
            return last_event_id
        if replay == "all":
            return 0
        return self.buffer.last_seq

    def page(self, req: ListTelemetryEventsRequest, now: float | None = None) -> EventsPage:
        """One page of held events. The offset cursor is the seq the next page starts after (asc) or
        before (desc); filters apply within the page, so a filtered page may be empty with more to come."""
        now = time.time() if now is None else now
        until_us = _instant(req.until, now, "until") if req.until is not None else None
        categories = split_list(req.category)
        types = split_list(req.type)
        buffer = self.buffer
        if req.order == "desc":
            if req.since is not None:
                raise BadRequest("order=desc cannot be combined with since")
            end = buffer.last_seq if req.offset is None else min(buffer.last_seq, req.offset - 1)
            seqs: list[int] = []
            seq = end
            while seq >= buffer.first_seq and len(seqs) < req.limit:
                item = buffer._entry(seq)[1]
                if until_us is None or item.ts < until_us:
                    seqs.append(seq)
                seq -= 1
            chosen = [buffer._entry(s)[1] for s in seqs]
            last = seqs[-1] if seqs else end + 1
            has_more = bool(seqs) and last > buffer.first_seq
            next_offset = last
        else:
            if req.offset is not None:
                after = req.offset
            else:
                since_us = _instant(req.since, now, "since") if req.since is not None else None
                since_us = since_us if since_us is not None else int((now - DEFAULT_WINDOW_S) * 1e6)
                after = buffer.first_seq - 1
                for seq, item in buffer.since(0):
                    if item.ts >= since_us:
                        break
                    after = seq
            chosen = []
            next_offset = after
            has_more = False
            for seq, item in buffer.since(after):
                if until_us is not None and item.ts >= until_us:
                    break
                if len(chosen) == req.limit:
                    has_more = True
                    break
                chosen.append(item)
                next_offset = seq
        items = [
            item.envelope
            for item in chosen
            if (categories is None or item.category in categories) and (types is None or item.type in types)
        ]
        return EventsPage(items, next_offset, has_more)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _instant(text: str, now: float, name: str) -> int:
    """An RFC-3339 timestamp, or a duration meaning that long ago, as Unix µs."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return int((now - float(match.group(1)) * _UNIT_S[match.group(2)]) * 1e6)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name} must be an RFC-3339 timestamp or a duration like 5m, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1e6)
