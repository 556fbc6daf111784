"""The headless variant (AGENT_HEADLESS=1): Chromium runs --headless=new, so there is no display to see or
drive. /health stays 200 and says so; the computer routes answer 409 no_display instead of black
screenshots and input that reaches no window."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from agent.spec import Spec, check
from harness.sandboxes import private_sandbox

ERROR = Spec.load().schema_validator("Error")

# A valid body for each route (the spec's required fields), so the refusal is about the display only.
ROUTES: dict[str, dict[str, Any] | None] = {
    "/computer/click_mouse": {"x": 10, "y": 10},
    "/computer/move_mouse": {"x": 10, "y": 10},
    "/computer/screenshot": {},
    "/computer/type": {"text": "a"},
    "/computer/press_key": {"keys": ["a"]},
    "/computer/scroll": {"x": 10, "y": 10, "delta_y": 1},
    "/computer/drag_mouse": {"path": [[1, 1], [5, 5]]},
    "/computer/cursor": {"hidden": True},
    "/computer/batch": {"actions": [{"type": "move_mouse", "move_mouse": {"x": 1, "y": 1}}]},
    "/computer/get_mouse_position": None,
    "/computer/clipboard/read": None,
    "/computer/clipboard/write": {"text": "a"},
}


@pytest.fixture(scope="module")
def headless() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-headless-", headless=True) as box:
        yield box
    # A private sandbox deletes its state dir (in /tmp) once every program of it is gone.
    assert not box.state_dir.exists()


async def test_health_says_there_is_no_display(headless: Sandbox) -> None:
    status, report = headless.health()
    assert status == 200, report
    assert report["display"]["available"] is False
    assert "none (headless)" in report["display"]["detail"]
    version = headless.cdp_version()
    assert version is not None and "HeadlessChrome/" in version["User-Agent"], version  # the launcher too


async def test_computer_routes_answer_409_no_display(headless: Sandbox) -> None:
    async with aiohttp.ClientSession() as http:
        for route, body in ROUTES.items():
            async with http.post(headless.agent_url + route, json=body) as reply:
                assert reply.status == 409, (route, await reply.text())
                error = await reply.json()
                check(ERROR, error)
                assert error["code"] == "no_display", error
                assert "headless" in error["message"] and "/playwright/execute" in error["message"]
        # The browser itself is there: CDP works.
        code = {"code": "return await page.evaluate(() => navigator.userAgent)"}
        async with http.post(headless.agent_url + "/playwright/execute", json=code) as reply:
            assert reply.status == 200, await reply.text()
            assert "HeadlessChrome/" in (await reply.json())["result"]
