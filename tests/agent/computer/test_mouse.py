"""Mouse routes, checked by what the page received."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import AgentClient, RecorderPage

# DOM MouseEvent.button for each of our button names.
DOM_BUTTON = {"left": 0, "middle": 1, "right": 2, "back": 3, "forward": 4}


@pytest.mark.parametrize("button", ["left", "right", "middle", "back", "forward"])
async def test_click_lands_where_asked_with_the_button_asked(
    page: RecorderPage, agent: AgentClient, button: str
) -> None:
    x, y = await page.center_of("#red")
    reply = await agent.post("/computer/click_mouse", {"x": x, "y": y, "button": button})
    assert reply.status == 200, reply
    events = await page.wait_for(lambda evs: any(e["type"] == "mouseup" for e in evs))
    down = next(e for e in events if e["type"] == "mousedown")
    up = next(e for e in events if e["type"] == "mouseup")
    assert (down["x"], down["y"]) == (x, y)
    assert down["button"] == up["button"] == DOM_BUTTON[button]


async def test_double_click_with_num_clicks(page: RecorderPage, agent: AgentClient) -> None:
    x, y = await page.center_of("#red")
    reply = await agent.post("/computer/click_mouse", {"x": x, "y": y, "num_clicks": 2})
    assert reply.status == 200, reply
    events = await page.wait_for(lambda evs: any(e["type"] == "dblclick" for e in evs))
    assert len([e for e in events if e["type"] == "click"]) == 2


async def test_down_then_up_are_separate_actions(page: RecorderPage, agent: AgentClient) -> None:
    x, y = await page.center_of("#red")
    assert (await agent.post("/computer/click_mouse", {"x": x, "y": y, "click_type": "down"})).status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "mousedown" for e in evs))
    assert not [e for e in events if e["type"] == "mouseup"]
    reply = await agent.post("/computer/click_mouse", {"x": x + 5, "y": y, "click_type": "up"})
    assert reply.status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "mouseup" for e in evs))
    up = next(e for e in events if e["type"] == "mouseup")
    assert (up["x"], up["y"]) == (x + 5, y)


async def test_click_with_hold_keys(page: RecorderPage, agent: AgentClient) -> None:
    x, y = await page.center_of("#red")
    reply = await agent.post("/computer/click_mouse", {"x": x, "y": y, "hold_keys": ["Shift", "ctrl"]})
    assert reply.status == 200, reply
    events = await page.wait_for(lambda evs: any(e["type"] == "click" for e in evs))
    click = next(e for e in events if e["type"] == "click")
    assert click["shift"] and click["ctrl"]
    # ...and the keys were let go afterwards.
    events = await page.wait_for(lambda evs: len([e for e in evs if e["type"] == "keyup"]) >= 2)
    assert {e["key"] for e in events if e["type"] == "keyup"} >= {"Shift", "Control"}


async def test_instant_move_and_position(page: RecorderPage, agent: AgentClient) -> None:
    reply = await agent.post("/computer/move_mouse", {"x": 333, "y": 444, "smooth": False})
    assert reply.status == 200, reply
    position = await agent.post("/computer/get_mouse_position")
    assert position.json() == {"x": 333, "y": 444}
    events = await page.wait_for(lambda evs: any(e["type"] == "mousemove" for e in evs))
    moves = [e for e in events if e["type"] == "mousemove"]
    assert len(moves) == 1 and (moves[0]["x"], moves[0]["y"]) == (333, 444)


async def test_smooth_move_follows_a_path_and_ends_exactly(page: RecorderPage, agent: AgentClient) -> None:
    await agent.post("/computer/move_mouse", {"x": 200, "y": 300, "smooth": False})
    await page.wait_for(lambda evs: any(e["type"] == "mousemove" for e in evs))
    await page.clear()
    reply = await agent.post("/computer/move_mouse", {"x": 900, "y": 700, "duration_ms": 300})
    assert reply.status == 200, reply
    events = await page.wait_for(
        lambda evs: any(e["type"] == "mousemove" and (e["x"], e["y"]) == (900, 700) for e in evs)
    )
    moves = [(e["x"], e["y"]) for e in events if e["type"] == "mousemove"]
    assert len(moves) >= 5, moves  # many intermediate points, not a jump
    assert moves[-1] == (900, 700)
    assert (await agent.post("/computer/get_mouse_position")).json() == {"x": 900, "y": 700}


async def test_smooth_move_with_automatic_timing(agent: AgentClient) -> None:
    reply = await agent.post("/computer/move_mouse", {"x": 50, "y": 60})
    assert reply.status == 200
    assert (await agent.post("/computer/get_mouse_position")).json() == {"x": 50, "y": 60}


async def test_move_with_hold_keys(page: RecorderPage, agent: AgentClient) -> None:
    reply = await agent.post(
        "/computer/move_mouse", {"x": 640, "y": 480, "smooth": False, "hold_keys": ["Alt"]}
    )
    assert reply.status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "mousemove" for e in evs))
    assert next(e for e in events if e["type"] == "mousemove")["alt"]


@pytest.mark.parametrize("smooth", [True, False])
async def test_drag_holds_the_button_along_the_path(
    page: RecorderPage, agent: AgentClient, smooth: bool
) -> None:
    path = [list(page.screen(150, 450)), list(page.screen(300, 500)), list(page.screen(420, 650))]
    # Chromium coalesces moves that come faster than its frames: space the linear steps out.
    body = {"path": path, "smooth": smooth, "step_delay_ms": 25, "steps_per_segment": 6, "duration_ms": 300}
    reply = await agent.post("/computer/drag_mouse", body)
    assert reply.status == 200, reply
    events = await page.wait_for(lambda evs: any(e["type"] == "mouseup" for e in evs))
    down = next(e for e in events if e["type"] == "mousedown")
    up = next(e for e in events if e["type"] == "mouseup")
    assert [down["x"], down["y"]] == path[0]
    assert [up["x"], up["y"]] == path[-1]
    moves = [e for e in events if e["type"] == "mousemove" and e["t"] > down["t"] and e["t"] < up["t"]]
    assert len(moves) >= (8 if not smooth else 4)
    assert all(m["buttons"] == 1 for m in moves)  # the left button is down the whole way
    if not smooth:
        assert [path[1][0], path[1][1]] in [[m["x"], m["y"]] for m in moves]  # straight through waypoints


async def test_drag_with_right_button_and_delay(page: RecorderPage, agent: AgentClient) -> None:
    path = [list(page.screen(150, 450)), list(page.screen(250, 450))]
    body = {"path": path, "button": "right", "delay": 50, "smooth": False, "step_delay_ms": 0}
    assert (await agent.post("/computer/drag_mouse", body)).status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "mouseup" for e in evs))
    assert next(e for e in events if e["type"] == "mousedown")["button"] == 2


async def test_scroll_moves_the_page_both_ways(page: RecorderPage, agent: AgentClient) -> None:
    x, y = page.screen(600, 600)
    reply = await agent.post("/computer/scroll", {"x": x, "y": y, "delta_y": 3})
    assert reply.status == 200, reply
    # Chromium may coalesce wheel events; the deltas add up to three notches (120 each) either way.
    events = await page.wait_for(lambda evs: _wheel_total(evs, "dy") >= 360)
    assert _wheel_total(events, "dy") == 360
    assert all((e["x"], e["y"]) == (x, y) for e in events if e["type"] == "wheel")
    assert await _settled(page, "scrollY") > 0

    await page.clear()
    reply = await agent.post("/computer/scroll", {"x": x, "y": y, "delta_x": 2, "delta_y": -3})
    assert reply.status == 200
    events = await page.wait_for(
        lambda evs: _wheel_total(evs, "dx") >= 240 and _wheel_total(evs, "dy") <= -360
    )
    assert (_wheel_total(events, "dx"), _wheel_total(events, "dy")) == (240, -360)
    assert await _settled(page, "scrollX") > 0
    assert await _settled(page, "scrollY") == 0


def _wheel_total(events: list[dict[str, Any]], axis: str) -> float:
    return float(sum(e[axis] for e in events if e["type"] == "wheel"))


async def test_scroll_with_hold_keys(page: RecorderPage, agent: AgentClient) -> None:
    x, y = page.screen(600, 600)
    reply = await agent.post("/computer/scroll", {"x": x, "y": y, "delta_y": 1, "hold_keys": ["ctrl"]})
    assert reply.status == 200
    events = await page.wait_for(lambda evs: any(e["type"] == "wheel" for e in evs))
    assert next(e for e in events if e["type"] == "wheel")["ctrl"]
    # Ctrl+wheel zooms in Chromium: put the zoom back for the next tests.
    await agent.post("/computer/press_key", {"keys": ["ctrl+0"]})


async def _settled(page: RecorderPage, prop: str) -> float:
    """window.scrollX/scrollY once smooth scrolling has stopped moving."""
    last = None
    for _ in range(100):
        value = float(await page.cdp.evaluate(f"window.{prop}"))
        if value == last:
            return value
        last = value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prop} never settled")


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("click_mouse", {"x": 5000, "y": 10}, "exceed the screen"),
        ("click_mouse", {"x": -1, "y": 10}, "non-negative"),
        ("click_mouse", {"x": 1, "y": 1, "button": "thumb"}, "button"),
        ("click_mouse", {"x": 1}, "missing required field: y"),
        ("click_mouse", {"x": "1", "y": 1}, "field 'x' must be of type integer"),
        ("move_mouse", {"x": 1, "y": 1, "duration_ms": 10}, "duration_ms"),
        ("move_mouse", {"x": 1, "y": 1, "speed": 3}, "unknown field: speed"),
        ("drag_mouse", {"path": [[1, 1]]}, "at least 2"),
        ("drag_mouse", {"path": [[1, 1], [1, 1, 1]]}, "path[1]"),
        ("drag_mouse", {"path": [[1, 1], [9999, 1]]}, "path[1]"),
        ("scroll", {"x": 1, "y": 1}, "non-zero"),
        ("scroll", {"x": 1, "y": 1, "delta_y": 1, "hold_keys": ["NotAKey"]}, "NotAKey"),
    ],
)
async def test_bad_mouse_input_is_a_400_that_names_the_problem(
    page: RecorderPage, agent: AgentClient, route: str, body: dict[str, object], fragment: str
) -> None:
    reply = await agent.post(f"/computer/{route}", body)
    assert reply.status == 400, reply
    error = reply.json()
    assert error["code"] == "bad_request"
    assert fragment in error["message"], error
    # Nothing reached the page.
    assert not [e for e in await page.events() if e["type"] != "mousemove"]
