"""Keyboard routes: exact text (any Unicode), key names and combos, holding, bad names."""

from __future__ import annotations

import time

import pytest

from tests.conftest import AgentClient, RecorderPage
from tests.helpers.poll import settles_to


@pytest.mark.parametrize(
    "text",
    [
        "héllo € ✓ 日本",
        "Hello, World! 0123456789 ~`!@#$%^&*()_+-=[]{}|;':\",./<>?\\",
        # More distinct unmapped characters than Xvfb has spare keycodes: the keycodes get reused.
        "ĀāĂăĄąĆćĈĉĊċČčĎďĐđĒēĔĕĖėĘęĚěĜĝĞğ Ωμέγα кириллица 日本語のテキスト ✓✗★☆♠♣",
    ],
)
async def test_type_is_exact(page: RecorderPage, agent: AgentClient, text: str) -> None:
    await page.focus_input()
    reply = await agent.post("/computer/type", {"text": text})
    assert reply.status == 200, reply
    assert await settles_to(page.value, text) == text


async def test_type_with_delay_between_keys(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    started = time.monotonic()
    reply = await agent.post("/computer/type", {"text": "slow ü", "delay": 20})
    assert reply.status == 200
    assert time.monotonic() - started >= 5 * 0.020  # five gaps between six characters were waited out
    await page.wait_for(lambda evs: len([e for e in evs if e["type"] == "keyup"]) >= 6)
    assert await page.value() == "slow ü"


async def test_press_key_combo_reaches_the_page(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    reply = await agent.post("/computer/press_key", {"keys": ["Ctrl+Shift+x"]})
    assert reply.status == 200, reply
    events = await page.wait_for(lambda evs: any(e["type"] == "keydown" and e["code"] == "KeyX" for e in evs))
    press = next(e for e in events if e["type"] == "keydown" and e["code"] == "KeyX")
    assert press["ctrl"] and press["shift"] and not press["alt"]
    keys = [e["key"] for e in events if e["type"] == "keydown"]
    assert keys[:2] == ["Control", "Shift"]
    # Released in reverse order.
    ups = [
        e["key"]
        for e in await page.wait_for(lambda evs: len([e for e in evs if e["type"] == "keyup"]) >= 3)
        if e["type"] == "keyup"
    ]
    assert ups[-2:] == ["Shift", "Control"]


async def test_press_key_sequence_and_aliases(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    await agent.post("/computer/type", {"text": "abc"})
    reply = await agent.post("/computer/press_key", {"keys": ["ctrl+a", "BackSpace", "x", "Enter", "esc"]})
    assert reply.status == 200, reply
    events = await page.wait_for(
        lambda evs: any(e["type"] == "keydown" and e["key"] == "Escape" for e in evs)
    )
    assert await page.value() == "x"  # ctrl+a selected all, BackSpace removed it
    keys = [e["key"] for e in events if e["type"] == "keydown"]
    assert "Enter" in keys and keys.index("Enter") < keys.index("Escape")


async def test_press_key_with_hold_keys(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    reply = await agent.post("/computer/press_key", {"keys": ["Home"], "hold_keys": ["Shift"]})
    assert reply.status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "keydown" and e["key"] == "Home" for e in evs))
    assert next(e for e in events if e["type"] == "keydown" and e["key"] == "Home")["shift"]


async def test_press_key_duration_holds_the_keys(page: RecorderPage, agent: AgentClient) -> None:
    await page.focus_input()
    reply = await agent.post("/computer/press_key", {"keys": ["Shift", "F2"], "duration": 300})
    assert reply.status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "keyup" and e["key"] == "Shift" for e in evs))
    first_down = next(e for e in events if e["type"] == "keydown" and e["key"] == "F2")
    first_up = next(e for e in events if e["type"] == "keyup")
    assert first_up["t"] - first_down["t"] >= 250  # held together for about the duration
    assert first_up["key"] == "F2"  # reverse order


async def test_unknown_key_is_rejected_before_anything_is_pressed(
    page: RecorderPage, agent: AgentClient
) -> None:
    await page.focus_input()
    reply = await agent.post("/computer/press_key", {"keys": ["a", "Ctrl+NoSuchKey"]})
    assert reply.status == 400
    error = reply.json()
    assert error["code"] == "bad_request"
    assert "keys[1]" in error["message"] and "NoSuchKey" in error["message"]
    reply = await agent.post("/computer/press_key", {"keys": ["a"], "hold_keys": ["Hyperdrive"]})
    assert reply.status == 400 and "Hyperdrive" in reply.json()["message"]
    reply = await agent.post("/computer/press_key", {"keys": []})
    assert reply.status == 400
    assert not await page.events("keydown")
    assert await page.value() == ""


@pytest.mark.parametrize(
    "body",
    [{"text": 5}, {"text": "a", "delay": -1}, {"txt": "a"}, {}],
)
async def test_bad_type_bodies(agent: AgentClient, body: dict[str, object]) -> None:
    reply = await agent.post("/computer/type", body)
    assert reply.status == 400 and reply.json()["code"] == "bad_request"
