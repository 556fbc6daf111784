"""The collector without a browser: seqs, bounds, truncation, paging, the configuration, typed requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent.errors import BadRequest
from agent.operation import build
from agent.spec import Spec
from agent.telemetry.models import (
    CATEGORY_OF,
    ListTelemetryEventsRequest,
    TelemetryConfigRequest,
    parse_categories,
)
from agent.telemetry.monitor import cut_utf8, is_structured, is_text, remote_to_str
from agent.telemetry.service import TelemetryService

SPEC = Spec.load()
ENVELOPE = SPEC.schema_validator("BrowserTelemetryEventEnvelope")


def valid(envelope: dict[str, Any]) -> dict[str, Any]:
    ENVELOPE.validate(envelope)
    return envelope


def test_every_event_type_of_the_spec_has_a_category_and_the_spec_knows_every_type() -> None:
    mapping = SPEC.document["components"]["schemas"]["BrowserTelemetryEvent"]["discriminator"]["mapping"]
    assert set(mapping) == set(CATEGORY_OF)
    assert len(mapping) == 27  # the spec's 22 and the SDK's page_crashed, api_call, cdp_*, service_crashed


def test_seq_is_monotonic_from_1_and_the_buffer_is_bounded_by_count_and_bytes() -> None:
    service = TelemetryService({"control"}, max_events=5, max_bytes=10_000)
    seqs = [
        service.emit("api_call", {"operation_id": "x", "request_id": str(i), "status": 200, "duration_ms": 1})
        for i in range(12)
    ]
    assert seqs == list(range(1, 13))
    assert len(service.buffer) == 5 and service.buffer.first_seq == 8
    for _, item in service.buffer.since(0):
        valid(item.envelope)
    big = TelemetryService({"console"}, max_events=100, max_bytes=3_000)
    for i in range(50):
        big.emit("console_log", {"text": "x" * 500, "args": [], "level": "log", "nav_seq": i})
    assert big.buffer.held_bytes <= 3_000 and len(big.buffer) < 10


def test_an_envelope_over_the_limit_keeps_its_type_and_loses_its_data() -> None:
    service = TelemetryService({"console"}, max_event_bytes=1024 * 1024)
    seq = service.emit("console_log", {"text": "y" * (2 * 1024 * 1024), "level": "log"})
    assert seq is not None
    envelope = valid(service.buffer._entry(seq)[1].envelope)
    assert envelope["event"]["type"] == "console_log" and envelope["event"]["truncated"] is True
    assert "data" not in envelope["event"]


def test_an_event_that_cannot_be_encoded_never_stops_the_collector() -> None:
    service = TelemetryService({"console"})
    service.emit("console_log", {"text": object()})
    service.emit("console_log", {"text": float("nan")})
    assert service.encode_errors == 2
    seq = service.emit("console_log", {"text": "fine", "level": "log"})
    assert seq == 3 and valid(service.buffer._entry(3)[1].envelope)["event"]["data"]["text"] == "fine"


def test_a_category_that_is_off_records_nothing_and_monitor_follows_the_cdp_categories() -> None:
    service = TelemetryService(set())
    assert service.emit("console_log", {"text": "a"}) is None
    assert service.emit("monitor_disconnected", {"reason": "chrome_restarted"}) is None
    service.set_enabled({"network"})
    assert service.emit("monitor_disconnected", {"reason": "chrome_restarted"}) == 1
    assert service.emit("console_log", {"text": "a"}) is None


def test_config_parsing() -> None:
    assert parse_categories("") == frozenset() and parse_categories("none") == frozenset()
    assert "screenshot" in parse_categories("all")
    assert parse_categories("console, page") == {"console", "page"}
    with pytest.raises(ValueError, match="bogus"):
        parse_categories("console,bogus")


def _events_request(**query: Any) -> ListTelemetryEventsRequest:
    op = SPEC.operations[("GET", "/telemetry/events")]
    args: dict[str, Any] = {}
    for param in op.parameters:
        if param.name in query:
            args[param.name] = query[param.name]
        elif "default" in param.schema:
            args[param.name] = param.schema["default"]
    return build(ListTelemetryEventsRequest, args)


def test_events_request_gets_the_spec_defaults() -> None:
    req = _events_request()
    assert (req.limit, req.order, req.since, req.offset) == (20, "asc", None, None)


def test_paging_asc_and_desc_with_filters_covers_every_event_once() -> None:
    service = TelemetryService({"console", "control"})
    for i in range(45):
        if i % 3:
            service.emit("console_log", {"text": str(i), "level": "log"})
        else:
            service.emit(
                "api_call", {"operation_id": "o", "request_id": str(i), "status": 200, "duration_ms": 0}
            )
    seen: list[int] = []
    offset = None
    while True:
        page = service.page(_events_request(limit=10, offset=offset, category="console"))
        seen += [valid(e)["seq"] for e in page.items]
        assert all(e["event"]["category"] == "console" for e in page.items)
        if not page.has_more:
            break
        offset = page.next_offset
    assert seen == [s for s in range(1, 46) if (s - 1) % 3]
    newest: list[int] = []
    offset = None
    while True:
        page = service.page(_events_request(limit=7, order="desc", offset=offset))
        newest += [e["seq"] for e in page.items]
        if not page.has_more:
            break
        offset = page.next_offset
    assert newest == list(range(45, 0, -1))
    with pytest.raises(BadRequest):
        service.page(_events_request(order="desc", since="5m"))
    with pytest.raises(BadRequest):
        service.page(_events_request(since="yesterday"))
    assert service.page(_events_request(since="2000-01-01T00:00:00Z", limit=1000)).items[0]["seq"] == 1
    assert service.page(_events_request(until="2000-01-01T00:00:00Z")).items == []


def test_config_request_builds_nested_categories() -> None:
    req = build(TelemetryConfigRequest, {"browser": {"console": {"enabled": False}, "page": {}}})
    assert req.browser is not None and req.browser.named() == {"console": False, "page": True}


async def test_followers_resume_without_gap_or_duplicate_and_see_evictions_as_gaps() -> None:
    service = TelemetryService({"console"}, max_events=10)
    for i in range(5):
        service.emit("console_log", {"text": str(i)})
    got: list[int] = []

    async def read(after: int, count: int) -> None:
        async for seq, envelope in service.follow(after):
            assert seq is not None and seq == envelope["seq"]
            got.append(seq)
            if len(got) == count:
                return

    await read(0, 3)
    await read(got[-1], 5)
    assert got == [1, 2, 3, 4, 5]
    for i in range(30):
        service.emit("console_log", {"text": str(i)})
    got.clear()
    await asyncio.wait_for(read(5, 10), 5)
    assert got[0] == 26 and got == list(range(26, 36))  # 6..25 were evicted: the reader sees the gap
    assert service.start_after(0, None) == 35 and service.start_after(0, "all") == 0
    assert service.start_after(7, "all") == 7


def test_response_body_helpers() -> None:
    assert is_structured("application/json") and is_structured("application/x-www-form-urlencoded")
    assert is_text("text/html") and is_text("application/javascript") and not is_text("image/png")
    text, cut = cut_utf8(("é" * 5000).encode(), 8 * 1024)
    assert cut and len(text.encode()) <= 8 * 1024 and text == "é" * 4096
    assert remote_to_str({"type": "number", "value": 3.0}) == "3"
    assert remote_to_str({"type": "boolean", "value": True}) == "true"
    assert remote_to_str({"type": "object", "description": "Object"}) == "Object"
    assert json.loads(remote_to_str({"type": "object", "value": {"a": 1}})) == {"a": 1}


def _frames(chunk: bytes) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for frame in chunk.decode().split("\n\n")[:-1]:
        id_line, data_line = frame.split("\n")
        assert id_line.startswith("id: ") and data_line.startswith("data: ")
        out.append((int(id_line[4:]), valid(json.loads(data_line[6:]))))
    return out


async def test_pre_encoded_frames_batch_what_is_held_filter_by_type_and_resume_without_gap() -> None:
    service = TelemetryService({"console", "control"}, max_events=2000)
    for i in range(1200):
        service.emit("console_log" if i % 3 else "console_error", {"text": str(i)})
    frames = service.follow_frames(0)
    chunks = [await anext(frames) for _ in range(3)]
    got = [frame for chunk in chunks for frame in _frames(chunk)]
    assert [len(_frames(c)) for c in chunks] == [512, 512, 176]  # one chunk per write, at most 512 frames
    assert [seq for seq, _ in got] == list(range(1, 1201))
    assert all(seq == envelope["seq"] for seq, envelope in got)
    waiting = asyncio.ensure_future(anext(frames))
    await asyncio.sleep(0)
    service.emit("console_log", {"text": "new"})
    assert [envelope["event"]["data"]["text"] for _, envelope in _frames(await waiting)] == ["new"]
    typed = service.follow_frames(1100, frozenset({"console_error"}))
    only = _frames(await anext(typed))
    assert {e["event"]["type"] for _, e in only} == {"console_error"} and only[0][0] > 1100
    await typed.aclose()
    await frames.aclose()
