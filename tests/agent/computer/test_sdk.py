"""The official Python SDK (PyPI `kernel`) drives every computer route through a prefix-stripping proxy."""

from __future__ import annotations

import io

import kernel
import pytest
from PIL import Image

from agent.sandbox import Sandbox
from tests.conftest import RecorderPage
from tests.helpers.poll import settles_to
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_drives_every_computer_route(page: RecorderPage, sandbox: Sandbox) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    computer = client.browsers.computer
    sid = SESSION_ID
    async with client:
        x, y = await page.center_of("#t")
        await computer.move_mouse(sid, x=x, y=y, smooth=False)
        await computer.click_mouse(sid, x=x, y=y, button="left", num_clicks=1)
        await computer.type_text(sid, text="sdk ✓")
        await computer.press_key(sid, keys=["Home"], hold_keys=["Shift"])
        await computer.press_key(sid, keys=["ctrl+c"])

        async def clipboard() -> str:
            return (await computer.read_clipboard(sid)).text

        # Chromium copies when it handles the key event, a moment later.
        assert await settles_to(clipboard, "sdk ✓") == "sdk ✓"
        await computer.write_clipboard(sid, text="pasted ✓")
        await computer.press_key(sid, keys=["End", "ctrl+v"])
        await computer.scroll(sid, x=x, y=y + 400, delta_y=1, delta_x=0)
        await computer.drag_mouse(sid, path=[[x, y + 300], [x + 40, y + 320]], smooth=False, step_delay_ms=0)
        await computer.batch(
            sid,
            actions=[
                {"type": "move_mouse", "move_mouse": {"x": 10, "y": 10, "smooth": False}},
                {"type": "sleep", "sleep": {"duration_ms": 10}},
            ],
        )
        position = await computer.get_mouse_position(sid)
        assert (position.x, position.y) == (10, 10)
        hidden = await computer.set_cursor_visibility(sid, hidden=True)
        assert hidden.ok is True
        await computer.set_cursor_visibility(sid, hidden=False)
        shot = await computer.capture_screenshot(sid)
        assert Image.open(io.BytesIO(await shot.read())).size == (1920, 1080)
        region = await computer.capture_screenshot(sid, region={"x": 0, "y": 0, "width": 64, "height": 32})
        assert Image.open(io.BytesIO(await region.read())).size == (64, 32)

        with pytest.raises(kernel.BadRequestError) as caught:
            await computer.press_key(sid, keys=["NoSuchKey"])
        assert "NoSuchKey" in str(caught.value)

    assert await settles_to(page.value, "sdk ✓pasted ✓") == "sdk ✓pasted ✓"
    paths = {path for _, path, _ in transport.seen}
    assert {
        "/computer/move_mouse", "/computer/click_mouse", "/computer/type", "/computer/press_key",
        "/computer/clipboard/read", "/computer/clipboard/write", "/computer/scroll", "/computer/drag_mouse",
        "/computer/batch", "/computer/get_mouse_position", "/computer/cursor", "/computer/screenshot",
    } <= paths  # fmt: skip
    assert all(status == 200 for _, _, status in transport.seen[:-1])
