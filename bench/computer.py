"""Computer controls: ours over HTTP vs the peers' subprocess per action (xdotool, ffmpeg x11grab)."""

from __future__ import annotations

import asyncio
import os
import urllib.parse

import aiohttp

from agent.sandbox import Sandbox
from harness.cdp import PageSession

from .common import Timing, measure, report, sandbox

BUSY_PAGE = """<!doctype html><body style="margin:0;font:14px serif">
<div style="height:300px;background:linear-gradient(90deg,red,orange,yellow,green,blue,violet)"></div>
<div id=t></div><script>
let s='';for(let i=0;i<3000;i++){
  s+='<span style="color:hsl('+(i*37%360)+',70%,40%)">word'+i+' lorem ipsum</span> ';}
document.getElementById('t').innerHTML=s;window.__ready=true;</script></body>"""
SIMPLE_PAGE = "<!doctype html><body><h1>Hello</h1><p>simple page</p><script>window.__ready=true</script>"


def data_url(html: str) -> str:
    return "data:text/html," + urllib.parse.quote(html)


async def _subprocess(*argv: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await process.wait() != 0:
        raise RuntimeError(f"{argv[0]} failed")


async def run(box: Sandbox) -> None:
    url = box.agent_url
    env = {**os.environ, "DISPLAY": box.config.display}
    width, height = box.config.screen_size
    page = await PageSession.open(box.cdp_url)
    async with aiohttp.ClientSession() as http:

        async def post(path: str, body: object) -> bytes:
            async with http.post(url + path, json=body) as response:
                data = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
                return data

        # --- click ---
        await page.navigate(data_url(SIMPLE_PAGE))
        click = {"x": 700, "y": 600}
        ours = await measure(
            "HTTP POST /computer/click_mouse", 300, lambda: post("/computer/click_mouse", click)
        )
        xdo = await measure(
            "xdotool mousemove X Y click 1 (subprocess)", 40,
            lambda: _subprocess("xdotool", "mousemove", "700", "600", "click", "1", env=env),
        )  # fmt: skip
        xdo0 = await measure(
            "xdotool mousemove X Y click --delay 0 1 (tuned)", 100,
            lambda: _subprocess("xdotool", "mousemove", "700", "600", "click", "--delay", "0", "1", env=env),
        )  # fmt: skip
        report("click", ours, [xdo, xdo0], "p50 <= 3 ms and >= 20x faster than the xdotool subprocess")

        # --- type ---
        text = {"text": "hello world"}
        ours = await measure(
            "HTTP POST /computer/type 'hello world'", 200, lambda: post("/computer/type", text)
        )
        xdo = await measure(
            "xdotool type 'hello world' (subprocess)", 30,
            lambda: _subprocess("xdotool", "type", "hello world", env=env),
        )  # fmt: skip
        xdo0 = await measure(
            "xdotool type --delay 0 'hello world' (tuned)", 60,
            lambda: _subprocess("xdotool", "type", "--delay", "0", "hello world", env=env),
        )  # fmt: skip
        report("type 'hello world'", ours, [xdo, xdo0])

        # --- batch of 100 instant moves ---
        moves = {
            "actions": [
                {"type": "move_mouse", "move_mouse": {"x": 100 + i * 5, "y": 200 + i * 3, "smooth": False}}
                for i in range(100)
            ]
        }
        ours = await measure(
            "HTTP POST /computer/batch (100 instant moves)", 50, lambda: post("/computer/batch", moves)
        )
        xdo_moves = [arg for i in range(100) for arg in ("mousemove", str(100 + i * 5), str(200 + i * 3))]
        xdo = await measure(
            "xdotool mousemove ×100 in one subprocess",
            20,
            lambda: _subprocess("xdotool", *xdo_moves, env=env),
        )
        report("batch of 100 instant moves", ours, [xdo], "<= 50 ms")

        # --- screenshot ---
        ffmpeg = (
            "ffmpeg", "-loglevel", "error", "-f", "x11grab", "-video_size", f"{width}x{height}",
            "-i", box.config.display, "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-",
        )  # fmt: skip
        targets = {
            "simple page": ">= 12x faster than ffmpeg x11grab",
            "busy page": ">= 8x faster than ffmpeg x11grab",
        }
        for label, content in (("simple page", SIMPLE_PAGE), ("busy page", BUSY_PAGE)):
            await page.navigate(data_url(content))
            await asyncio.sleep(1.0)  # let Chromium paint it to the X screen
            await post("/computer/move_mouse", {"x": 5, "y": height - 5, "smooth": False})
            size = len(await post("/computer/screenshot", {}))
            ours = await measure(
                f"HTTP POST /computer/screenshot PNG ({size // 1024} KiB)",
                40,
                lambda: post("/computer/screenshot", {}),
            )
            peer = await measure(
                "ffmpeg -f x11grab -frames:v 1 PNG (subprocess)", 15, lambda: _subprocess(*ffmpeg, env=env)
            )
            jpeg = await _accepting(http, url, "image/jpeg")
            webp = await _accepting(http, url, "image/webp")
            report(f"full-screen screenshot, {label}", ours, [peer, jpeg, webp], targets[label])
    await page.close()


async def _accepting(http: aiohttp.ClientSession, url: str, accept: str) -> Timing:
    async def shot() -> bytes:
        async with http.post(url + "/computer/screenshot", json={}, headers={"Accept": accept}) as response:
            if response.headers.get("Content-Type") != accept:
                raise RuntimeError(f"asked for {accept}, got {response.headers.get('Content-Type')}")
            return await response.read()

    size = len(await shot())
    return await measure(f"HTTP screenshot, Accept: {accept} ({size // 1024} KiB)", 40, shot)


def main() -> Timing | None:
    with sandbox() as box:
        asyncio.run(run(box))
    return None
