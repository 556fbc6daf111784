"""Replays: agent + ffmpeg CPU while recording 1920x1080 at 10 and 25 fps, and MB per minute, ours
(POST /replays: fragmented MP4, a fragment a second, a keyframe every 5 s, every packet flushed) vs
Kernel's recipe
(`ffmpeg -f x11grab … -c:v libx264 -preset ultrafast -pix_fmt yuv420p out.mp4`, run directly).

The page moves a box and counts, as a live page does; the same page for both ways.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from agent.sandbox import Sandbox
from harness.cdp import PageSession

from . import common

SECONDS = 12.0
PAGE = "data:text/html," + urllib.parse.quote(
    "<html><body style='margin:0;font:40px sans-serif'><div id=b style='position:absolute;width:200px;"
    "height:200px;background:#c33'></div><p id=n style='margin-top:300px'></p><script>let i = 0;"
    "function tick(t) { i++; b.style.left = (t / 5 % 1700) + 'px';"
    " b.style.top = (100 + 80 * Math.sin(t / 500)) + 'px'; n.textContent = 'frame ' + i;"
    " requestAnimationFrame(tick); } requestAnimationFrame(tick); window.__ready = true;"
    "</script></body></html>"
)


@dataclass
class Run:
    name: str
    cpu_pct: float  # of one core, agent + ffmpeg
    mb_per_min: float


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _ffmpeg_recording(replay_id: str) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ffmpeg" in cmdline and replay_id in cmdline:
            return proc
    raise RuntimeError(f"no ffmpeg for {replay_id}")


async def _ours(box: Sandbox, http: aiohttp.ClientSession, fps: int) -> Run:
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    async with http.post(box.agent_url + "/replays", json={"framerate": fps}) as response:
        replay_id = (await response.json())["replay_id"]
    ffmpeg = _ffmpeg_recording(replay_id)
    before, t0 = _cpu([agent, ffmpeg]), time.monotonic()
    await asyncio.sleep(SECONDS)
    cpu, wall = _cpu([agent, ffmpeg]) - before, time.monotonic() - t0
    async with http.post(f"{box.agent_url}/replays/{replay_id}/stop") as response:
        await response.read()
    async with http.get(f"{box.agent_url}/replays/{replay_id}") as response:
        size = len(await response.read())
    return Run(f"ours: POST /replays {fps} fps", 100 * cpu / wall, size / 1e6 * 60 / wall)


async def _kernel(box: Sandbox, fps: int) -> Run:
    width, height = box.config.screen_size
    with tempfile.TemporaryDirectory(prefix="bench-replays-") as tmp:
        out = Path(tmp) / "out.mp4"
        argv = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "x11grab", "-framerate", str(fps),
                "-video_size", f"{width}x{height}", "-i", box.config.display, "-c:v", "libx264",
                "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-y", str(out)]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: ASYNC220
        try:
            ps = psutil.Process(proc.pid)
            await asyncio.sleep(0.3)  # as ours: measure the recording, not the start
            before, t0 = _cpu([ps]), time.monotonic()
            await asyncio.sleep(SECONDS)
            cpu, wall = _cpu([ps]) - before, time.monotonic() - t0
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.to_thread(proc.wait, 10)
        size = await asyncio.to_thread(os.path.getsize, out)
    return Run(
        f"Kernel's recipe: ffmpeg -preset ultrafast {fps} fps", 100 * cpu / wall, size / 1e6 * 60 / wall
    )


async def _run() -> None:
    # 25 fps is above the CPU limit: this sandbox says it is GPU-backed.
    with common.sandbox(replays_gpu=True) as box:
        page = await PageSession.open(box.cdp_url)
        try:
            await page.navigate(PAGE)
            async with aiohttp.ClientSession() as http:
                for fps in (10, 25):
                    ours = await _ours(box, http, fps)
                    peer = await _kernel(box, fps)
                    print(f"\n## recording 1920x1080 at {fps} fps for {SECONDS:.0f} s (moving box page)")
                    print(f"{'way':58} {'CPU % core':>10} {'MB/min':>8} {'CPU ratio':>10}")
                    for run in (ours, peer):
                        ratio = run.cpu_pct / ours.cpu_pct if ours.cpu_pct else float("inf")
                        label = "1.0 (ours)" if run is ours else f"{ratio:.2f}x"
                        print(f"{run.name:58} {run.cpu_pct:10.1f} {run.mb_per_min:8.2f} {label:>10}")
        finally:
            await page.close()


def main() -> None:
    asyncio.run(_run())
