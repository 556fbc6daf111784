"""Screenshots: real pixels of a known page, regions, JPEG, WebP, the pointer, bad regions; PNG encoding."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
import struct
import zlib
from collections.abc import Iterator

import mss
import pytest
from PIL import Image

from agent.sandbox import Sandbox
from agent.screenshot.http import negotiate
from agent.screenshot.service import Region, ScreenshotService, adler32_combine, encode_png
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


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, checking each CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, payload = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        yield kind, payload
        at += 12 + length


def _strictly_valid_png_pixels(png: bytes, width: int, height: int) -> bytes:
    """The RGB pixels of a PNG after checking what Pillow does not: chunk CRCs and the zlib stream's own
    Adler-32 (zlib.decompress verifies it), and that every row uses filter 'None'."""
    chunks = list(_chunks(png))
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    scanlines = zlib.decompress(chunks[1][1])
    stride = width * 3 + 1
    assert len(scanlines) == stride * height
    assert all(scanlines[row * stride] == 0 for row in range(height))
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.mode == "RGB" and image.size == (width, height)
    return image.tobytes()


def _rgb_of(bgra: bytes) -> bytes:
    """BGRX -> RGB the plain way (not the encoder's), as a reference."""
    rgb = bytearray(len(bgra) // 4 * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = bgra[2::4], bgra[1::4], bgra[0::4]
    return bytes(rgb)


def test_adler32_combine_matches_zlib() -> None:
    a, b = os.urandom(70_000), os.urandom(12_345)
    assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
    assert adler32_combine(1, zlib.adler32(b), len(b)) == zlib.adler32(b)
    assert adler32_combine(zlib.adler32(a), 1, 0) == zlib.adler32(a)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 7), (641, 601), (1920, 1080)])
@pytest.mark.parametrize("stripes", [1, 2, 3])
def test_png_stripes_join_into_one_valid_stream(width: int, height: int, stripes: int) -> None:
    # Random pixels (incompressible) and a flat half (long matches across a stripe boundary); images of
    # >= 1 MiB go through the parallel stripes, smaller ones through one.
    noise = os.urandom(width * height * 2)
    bgra = noise + bytes([10, 200, 30, 0]) * ((width * height * 4 - len(noise)) // 4)
    bgra += bytes(width * height * 4 - len(bgra))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        png = encode_png(bytearray(bgra), width, height, pool=pool, stripes=stripes)
    assert _strictly_valid_png_pixels(png, width, height) == _rgb_of(bgra)


async def test_full_screen_png_is_the_grab_pixel_for_pixel(
    page: RecorderPage, agent: AgentClient, sandbox: Sandbox
) -> None:
    """The PNG decodes to exactly the screen's pixels: each one is what a raw grab just before or just after
    saw (a caret may blink meanwhile)."""

    def grab() -> bytes:
        with mss.MSS(display=sandbox.config.display) as screen:
            return bytes(screen.grab(screen.monitors[1]).raw)

    await agent.post("/computer/move_mouse", {"x": 5, "y": 1070, "smooth": False})
    assert (await agent.post("/computer/cursor", {"hidden": True})).status == 200
    try:
        before = await asyncio.to_thread(grab)
        reply = await agent.post("/computer/screenshot")
        after = await asyncio.to_thread(grab)
    finally:
        assert (await agent.post("/computer/cursor", {"hidden": False})).status == 200
    assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
    pixels = _strictly_valid_png_pixels(reply.body, 1920, 1080)
    expected, later = _rgb_of(before), _rgb_of(after)
    if pixels != expected and pixels != later:
        changed = [i for i in range(0, len(expected), 3) if expected[i : i + 3] != later[i : i + 3]]
        assert len(changed) < 1920 * 1080 // 100
        wrong = [
            i
            for i in range(0, len(pixels), 3)
            if pixels[i : i + 3] != expected[i : i + 3] and pixels[i : i + 3] != later[i : i + 3]
        ]
        assert not wrong, f"{len(wrong)} pixels differ from the screen, the first at {wrong[0] // 3}"


async def test_a_region_grabs_only_the_region(sandbox: Sandbox) -> None:
    service = ScreenshotService(sandbox.config.display, cursor_visible=lambda: False)
    try:
        shot = await asyncio.to_thread(service._grab, False, Region(x=100, y=50, width=37, height=21))
        assert tuple(shot.size) == (37, 21)
        assert len(shot.raw) == 37 * 21 * 4  # the X server sent the box, not the screen to crop
        image = await service.capture(Region(x=100, y=50, width=37, height=21))
        assert image.content_type == "image/png"
        _strictly_valid_png_pixels(image.data, 37, 21)
    finally:
        await service.close()


async def test_webp_when_the_client_prefers_it(page: RecorderPage, agent: AgentClient) -> None:
    reply = await agent.post("/computer/screenshot", {}, headers={"Accept": "image/webp, image/png;q=0.5"})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "image/webp"
    assert reply.headers["Vary"] == "Accept"
    assert reply.body[:4] == b"RIFF" and reply.body[8:12] == b"WEBP"
    image = _image(reply.body)
    assert image.size == (1920, 1080)
    red = image.getpixel(page.screen(900, 200))
    assert isinstance(red, tuple) and red[0] > 240 and red[1] < 20 and red[2] < 20


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("", "png"),
        ("*/*", "png"),
        ("image/*", "png"),
        ("image/png", "png"),
        ("image/jpeg", "jpeg"),
        ("image/jpg", "jpeg"),
        ("image/webp", "webp"),
        ("image/png, image/jpeg", "png"),  # a tie keeps the default
        ("image/png;q=0.9, image/jpeg", "jpeg"),
        ("image/webp, image/png;q=0.8, */*;q=0.1", "webp"),
        ("image/avif,image/webp,image/apng,*/*;q=0.8", "webp"),  # a browser's
        ("image/webp;q=0.5, image/jpeg;q=0.9", "jpeg"),
        ("image/webp, image/jpeg", "jpeg"),  # a tie between the two: the cheaper one
        ("image/webp;q=0", "png"),
        ("image/webp;q=oops", "png"),
        ("IMAGE/WEBP", "webp"),
    ],
)
def test_accept_negotiation(accept: str, kind: str) -> None:
    assert negotiate(accept) == kind
