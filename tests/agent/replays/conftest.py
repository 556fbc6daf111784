"""Helpers for the replay tests: an animating page, ffprobe, a spec-checked client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

from agent.spec import Spec, check
from harness.cdp import PageSession
from tests.conftest import AgentClient, Reply

SPEC = Spec.load()
REPLAY = SPEC.schema_validator("BrowserReplay")
ERROR = SPEC.schema_validator("Error")

# A full-screen colour that changes every frame (and a counter), so consecutive video frames differ.
ANIMATED = "data:text/html," + urllib.parse.quote(
    "<html><body style='margin:0'><div id=n style='font:200px sans-serif'>0</div><script>"
    "let i = 0; function tick() { i++; document.body.style.background = `hsl(${(i * 37) % 360},80%,50%)`;"
    " document.getElementById('n').textContent = i; requestAnimationFrame(tick); } tick();"
    " window.__ready = true;</script></body></html>"
)


async def animate(page: PageSession) -> None:
    await page.navigate(ANIMATED)


def replay(reply: Reply, status: int = 201) -> dict[str, Any]:
    assert reply.status == status, reply
    body: dict[str, Any] = reply.json()
    check(REPLAY, body)
    return body


def replays(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200, reply
    body: list[dict[str, Any]] = reply.json()
    for item in body:
        check(REPLAY, item)
    return body


def error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply
    body = reply.json()
    check(ERROR, body)
    message: str = body["message"]
    return message


async def start(agent: AgentClient, **body: Any) -> dict[str, Any]:
    return replay(await agent.post("/replays", body))


async def stop(agent: AgentClient, replay_id: str) -> None:
    reply = await agent.post(f"/replays/{replay_id}/stop")
    assert reply.status == 200, reply


async def download(agent: AgentClient, replay_id: str, timeout: float = 20.0) -> bytes:
    """The finished file (waits out the 202s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        reply = await agent.get(f"/replays/{replay_id}")
        if reply.status == 200:
            assert reply.headers["Content-Type"] == "video/mp4"
            assert int(reply.headers["Content-Length"]) == len(reply.body)
            return reply.body
        assert reply.status == 202, reply
        assert asyncio.get_running_loop().time() < deadline, "the recording never finished"
        await asyncio.sleep(0.2)


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            path,
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    info: dict[str, Any] = json.loads(out.stdout)
    hashes = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "framemd5", "-"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    info["distinct_frames"] = len(
        {line.split()[-1] for line in hashes.stdout.decode().splitlines() if not line.startswith("#")}
    )
    return info


async def probe(data: bytes, tmp_path: Path) -> dict[str, Any]:
    """ffprobe of an MP4 (fails unless it is readable): its video stream, duration, distinct frames."""
    path = tmp_path / "replay.mp4"
    path.write_bytes(data)
    info = await asyncio.to_thread(_probe, path)
    (stream,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    return {
        "codec": stream["codec_name"],
        "frames": int(stream["nb_read_frames"]),
        "duration": float(info["format"]["duration"]),
        "distinct_frames": info["distinct_frames"],
        "audio": any(s["codec_type"] == "audio" for s in info["streams"]),
    }
