"""Bounded input: every count and duration has an upper bound (400 naming the field, nothing typed or
clicked before it); requests at the bounds are accepted. (Long actions and clients that leave: test_flood.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import AgentClient, RecorderPage
from tests.helpers.poll import settles_to

INPUT_EVENTS = ("keydown", "keyup", "mousedown", "mouseup", "click", "wheel", "paste")
HUGE = 10**15  # far past what time.sleep / Event.wait accept ("timestamp out of range for platform time_t")


def _sleep(ms: int) -> dict[str, Any]:
    return {"type": "sleep", "sleep": {"duration_ms": ms}}


def _type(text: str, delay: int = 0) -> dict[str, Any]:
    return {"type": "type_text", "type_text": {"text": text, "delay": delay}}


PT = [960, 540]
OVER_THE_LIMIT = [
    ("/computer/scroll", {"x": 960, "y": 540, "delta_y": 1_000_000_000}, "delta_y"),
    ("/computer/scroll", {"x": 960, "y": 540, "delta_y": 1001}, "delta_y"),
    ("/computer/scroll", {"x": 960, "y": 540, "delta_x": -1001}, "delta_x"),
    ("/computer/click_mouse", {"x": 960, "y": 540, "num_clicks": 101}, "num_clicks"),
    ("/computer/click_mouse", {"x": 960, "y": 540, "hold_keys": ["shift"] * 17}, "hold_keys"),
    ("/computer/type", {"text": "x" * 100_001}, "text"),
    ("/computer/type", {"text": "abc", "delay": 10_001}, "delay"),
    ("/computer/type", {"text": "abc", "delay": HUGE}, "delay"),
    # Each delay is allowed, together they are not: 99 gaps of 10 s is more than one request may take.
    ("/computer/type", {"text": "x" * 100, "delay": 10_000}, "delay"),
    ("/computer/press_key", {"keys": ["a"], "duration": 60_001}, "duration"),
    ("/computer/press_key", {"keys": ["a"], "duration": HUGE}, "duration"),
    ("/computer/press_key", {"keys": ["a"] * 101}, "keys"),
    ("/computer/move_mouse", {"x": 10, "y": 10, "duration_ms": 5001}, "duration_ms"),
    ("/computer/drag_mouse", {"path": [PT, [970, 540]], "delay": 60_001}, "delay"),
    ("/computer/drag_mouse", {"path": [PT, [970, 540]], "delay": HUGE}, "delay"),
    ("/computer/drag_mouse", {"path": [PT, [970, 540]], "duration_ms": 10_001}, "duration_ms"),
    (
        "/computer/drag_mouse",
        {"path": [PT, [970, 540]], "smooth": False, "step_delay_ms": 10_001},
        "step_delay_ms",
    ),
    (
        "/computer/drag_mouse",
        {"path": [PT, [970, 540]], "smooth": False, "steps_per_segment": 1001},
        "steps_per_segment",
    ),
    ("/computer/drag_mouse", {"path": [PT] * 1001}, "path"),
    # 1000 steps of 1 s in one drag: every field allowed, the whole too long.
    (
        "/computer/drag_mouse",
        {"path": [PT, [970, 540]], "smooth": False, "steps_per_segment": 1000, "step_delay_ms": 1000},
        "step_delay_ms",
    ),
    ("/computer/batch", {"actions": [_sleep(1)] * 101}, "actions"),
    ("/computer/batch", {"actions": [_sleep(30_001)]}, "actions[0].sleep.duration_ms"),
    ("/computer/batch", {"actions": [_type("abc", HUGE)]}, "actions[0].type_text.delay"),
    # Batch totals: eleven 30 s sleeps (330 s), and three maximal texts (600,000 key events).
    ("/computer/batch", {"actions": [_type("a"), *[_sleep(30_000)] * 11]}, "actions"),
    ("/computer/batch", {"actions": [_type("y" * 100_000)] * 3}, "actions"),
]


@pytest.mark.parametrize(
    ("path", "body", "field"), OVER_THE_LIMIT, ids=[f"{p.split('/')[-1]}-{f}" for p, _, f in OVER_THE_LIMIT]
)
async def test_over_the_limit_is_400_and_nothing_happens(
    page: RecorderPage, agent: AgentClient, path: str, body: dict[str, Any], field: str
) -> None:
    await page.focus_input()
    reply = await agent.post(path, body)
    assert reply.status == 400, reply
    assert reply.json()["code"] == "bad_request"
    assert field in reply.json()["message"], reply
    # Nothing partial happened: no key typed, no click, no wheel (the batch's first action did not run).
    await asyncio.sleep(0.3)
    assert await page.value() == ""
    assert not [e for e in await page.events() if e["type"] in INPUT_EVENTS]


async def test_at_the_limit_is_accepted(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    assert (await agent.post("/computer/scroll", {"x": 960, "y": 540, "delta_y": -1000})).status == 200
    reply = await agent.post("/computer/batch", {"actions": [_type("ok", 0), _sleep(10)] * 50})
    assert reply.status == 200, reply
    assert await settles_to(page.value, "ok" * 50) == "ok" * 50
