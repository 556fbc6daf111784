"""Screenshots: real pixels of a known page, regions, JPEG, the pointer, bad regions."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import AgentClient, RecorderPage


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


async def test_full_screen_png_shows_the_page(page: RecorderPage, agent: AgentClient) -> None:
    await agent.post("/computer/move_mouse", {"x": 5, "y": 1070, "smooth": False})
    reply = await agent.post("/computer/screenshot")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "image/png"
    assert reply.body.startswith(b"\x89PNG\r\n\x1a\n")
    image = _image(reply.body)
    assert image.size == (1920, 1080)
    assert image.getpixel(page.screen(900, 200)) == (255, 0, 0)  # inside #red
    assert image.getpixel(page.screen(1070, 150)) == (0, 0, 255)  # inside #blue
    assert image.getpixel(page.screen(300, 550)) == (255, 255, 255)  # inside #white


async def test_region_is_exactly_that_part_of_the_screen(page: RecorderPage, agent: AgentClient) -> None:
    await agent.post("/computer/move_mouse", {"x": 5, "y": 1070, "smooth": False})
    x, y = page.screen(810, 110)  # 10 px inside #red's corner
    reply = await agent.post("/computer/screenshot", {"region": {"x": x, "y": y, "width": 300, "height": 80}})
    assert reply.status == 200, reply
    image = _image(reply.body)
    assert image.size == (300, 80)
    assert image.getpixel((0, 0)) == (255, 0, 0)
    assert image.getpixel((189, 79)) == (255, 0, 0)  # still #red (ends 190 px right of x)
    assert image.getpixel((195, 40)) == (255, 255, 255)  # the gap between #red and #blue
    assert image.getpixel((250, 40)) == (0, 0, 255)  # #blue


async def test_jpeg_when_the_client_prefers_it(page: RecorderPage, agent: AgentClient) -> None:
    reply = await agent.post("/computer/screenshot", {}, headers={"Accept": "image/jpeg"})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "image/jpeg"
    assert reply.body[:3] == b"\xff\xd8\xff"
    red = _image(reply.body).getpixel(page.screen(900, 200))
    assert isinstance(red, tuple) and red[0] > 240 and red[1] < 20 and red[2] < 20


async def test_the_pointer_is_drawn_unless_hidden(page: RecorderPage, agent: AgentClient) -> None:
    x, y = page.screen(200, 450)  # over the white area
    await agent.post("/computer/move_mouse", {"x": x, "y": y, "smooth": False})
    region = {"x": x - 2, "y": y - 2, "width": 30, "height": 30}

    def dark_pixels(data: bytes) -> int:
        return sum(_image(data).convert("L").histogram()[:70])

    try:
        shown = await agent.post("/computer/screenshot", {"region": region})
        assert dark_pixels(shown.body) > 10  # the arrow
        reply = await agent.post("/computer/cursor", {"hidden": True})
        assert reply.status == 200 and reply.json() == {"ok": True}
        hidden = await agent.post("/computer/screenshot", {"region": region})
        assert dark_pixels(hidden.body) == 0
        # Hiding twice and showing once shows it again (no nesting).
        await agent.post("/computer/cursor", {"hidden": True})
    finally:
        reply = await agent.post("/computer/cursor", {"hidden": False})
    assert reply.json() == {"ok": True}
    again = await agent.post("/computer/screenshot", {"region": region})
    assert dark_pixels(again.body) > 10


@pytest.mark.parametrize(
    "region",
    [
        {"x": 1900, "y": 0, "width": 100, "height": 10},
        {"x": 0, "y": 1000, "width": 10, "height": 81},
        {"x": -1, "y": 0, "width": 10, "height": 10},
        {"x": 0, "y": 0, "width": 0, "height": 10},
    ],
)
async def test_region_outside_the_screen_is_a_400(agent: AgentClient, region: dict[str, int]) -> None:
    reply = await agent.post("/computer/screenshot", {"region": region})
    assert reply.status == 400
    assert reply.json()["code"] == "bad_request"


async def test_region_fields_are_validated(agent: AgentClient) -> None:
    reply = await agent.post("/computer/screenshot", {"region": {"x": 0, "y": 0, "width": 10}})
    assert reply.status == 400 and "region.height" in reply.json()["message"]
    reply = await agent.post("/computer/screenshot", {"format": "gif"})
    assert reply.status == 400 and "format" in reply.json()["message"]


async def test_empty_body_is_the_whole_screen(agent: AgentClient) -> None:
    reply = await agent.post("/computer/screenshot", data=b"", headers={"Content-Type": "application/json"})
    assert reply.status == 200 and _image(reply.body).size == (1920, 1080)
