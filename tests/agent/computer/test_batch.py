"""Batches: in order, checked up front, stopped at the first failure, nothing held afterwards."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import aiohttp
import pytest
from Xlib import display as xdisplay

from agent.computer.actions import Action, Budget, ClickMouse, Runner, TypeText
from agent.computer.service import ComputerService, input_thread
from agent.errors import AgentError
from agent.sandbox import Sandbox
from agent.x11.input import CursorState
from tests.conftest import AgentClient, RecorderPage


async def test_batch_runs_every_action_in_order(page: RecorderPage, agent: AgentClient) -> None:
    x, y = await page.center_of("#t")
    actions = [
        {"type": "move_mouse", "move_mouse": {"x": x, "y": y, "smooth": False}},
        {"type": "click_mouse", "click_mouse": {"x": x, "y": y}},
        {"type": "sleep", "sleep": {"duration_ms": 50}},
        {"type": "type_text", "type_text": {"text": "bätch ✓"}},
        {"type": "press_key", "press_key": {"keys": ["Home"], "hold_keys": ["Shift"]}},
        {"type": "press_key", "press_key": {"keys": ["Delete"]}},
        {"type": "type_text", "type_text": {"text": "done"}},
        {"type": "scroll", "scroll": {"x": x, "y": y + 300, "delta_y": 1}},
        {"type": "set_cursor", "set_cursor": {"hidden": False}},
        {"type": "drag_mouse", "drag_mouse": {"path": [[x, y + 300], [x + 50, y + 300]], "smooth": False}},
    ]
    reply = await agent.post("/computer/batch", {"actions": actions})
    assert reply.status == 200, reply
    await page.wait_for(lambda evs: any(e["type"] == "wheel" for e in evs))
    assert await page.value() == "done"


async def test_a_bad_action_anywhere_rejects_the_batch_before_anything_runs(
    page: RecorderPage, agent: AgentClient
) -> None:
    x, y = await page.center_of("#t")
    actions: list[dict[str, Any]] = [
        {"type": "click_mouse", "click_mouse": {"x": x, "y": y}},
        {"type": "type_text", "type_text": {"text": "never"}},
        {"type": "press_key", "press_key": {"keys": ["Ctrl+Bogus"]}},
    ]
    reply = await agent.post("/computer/batch", {"actions": actions})
    assert reply.status == 400
    error = reply.json()
    assert error["message"].startswith("actions[2] (press_key):"), error
    assert "Bogus" in error["message"]
    actions[2] = {"type": "click_mouse", "click_mouse": {"x": 99999, "y": 1}}
    reply = await agent.post("/computer/batch", {"actions": actions})
    assert reply.status == 400 and reply.json()["message"].startswith("actions[2] (click_mouse):")
    await asyncio.sleep(0.2)
    assert not [e for e in await page.events() if e["type"] in ("mousedown", "keydown")]


@pytest.mark.parametrize(
    ("actions", "fragment"),
    [
        ([], "at least 1"),
        ([{"type": "sleep", "sleep": {"duration_ms": 1}}] * 101, "at most 100"),
        ([{"type": "click_mouse", "move_mouse": {"x": 1, "y": 1}}], "actions[0] (click_mouse)"),
        ([{"type": "sleep", "sleep": {"duration_ms": 1}, "scroll": {"x": 1, "y": 1}}], "actions[0] (sleep)"),
        ([{"type": "teleport"}], "actions[0].type"),
        ([{"type": "sleep", "sleep": {"duration_ms": 30001}}], "actions[0].sleep.duration_ms"),
        ([{"type": "move_mouse", "move_mouse": {"x": 1}}], "actions[0].move_mouse.y"),
    ],
)
async def test_malformed_batches(agent: AgentClient, actions: list[dict[str, Any]], fragment: str) -> None:
    reply = await agent.post("/computer/batch", {"actions": actions})
    assert reply.status == 400, reply
    assert fragment in reply.json()["message"], reply.json()


class _PressShiftThenFail:
    """An action that fails midway while holding a modifier."""

    kind: ClassVar[str] = "explode"

    def check(self, screen: tuple[int, int]) -> None:
        pass

    def budget(self) -> Budget:
        return Budget()

    def run(self, runner: Runner) -> None:
        runner.inp.keysym_down(0xFFE1)  # Shift_L
        runner.inp.flush()
        raise RuntimeError("boom")


def _keys_down(display_name: str) -> set[int]:
    conn = xdisplay.Display(display_name)
    try:
        keymap = conn.query_keymap()
        return {byte * 8 + bit for byte, bits in enumerate(keymap) for bit in range(8) if bits & (1 << bit)}
    finally:
        conn.close()


async def test_failure_midway_stops_the_rest_and_releases_everything(
    page: RecorderPage, sandbox: Sandbox
) -> None:
    """A real X input thread (its own connection to the sandbox's display) runs a batch whose second
    action fails while holding Shift: the first ran, the third did not, and no key stays down."""
    x_input = input_thread(sandbox.config.display, CursorState())
    service = ComputerService(x_input)
    x, y = await page.center_of("#t")
    try:
        actions: list[Action] = [
            ClickMouse(x, y, 1, "click", 1, []),
            _PressShiftThenFail(),
            TypeText([122], 0),
        ]
        with pytest.raises(AgentError) as caught:
            await service.run(actions, batch=True)
        assert caught.value.status == 500
        assert caught.value.message == "actions[1] (explode): boom"
        await page.wait_for(lambda evs: any(e["type"] == "keyup" and e["key"] == "Shift" for e in evs))
        assert await page.value() == ""
        assert not _keys_down(sandbox.config.display) - {0}
    finally:
        await x_input.close()


async def test_cancelled_request_lets_go_of_the_button(page: RecorderPage, agent: AgentClient) -> None:
    """A client that gives up on a long drag does not leave the mouse button down."""
    start = page.screen(150, 450)
    # Ten steps a second apart: left alone this drag would hold the button for ten seconds.
    body = {"path": [list(start), [start[0] + 200, start[1]]], "smooth": False, "step_delay_ms": 1000}
    with pytest.raises(TimeoutError):
        await agent.post("/computer/drag_mouse", body, timeout=aiohttp.ClientTimeout(total=0.3))
    events = await page.wait_for(lambda evs: any(e["type"] == "mouseup" for e in evs))
    assert next(e for e in events if e["type"] == "mousedown")["button"] == 0
    # The agent is free again right away.
    assert (await agent.post("/computer/get_mouse_position")).status == 200
