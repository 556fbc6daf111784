"""/replays against the session sandbox: real Xvfb, Chromium and ffmpeg."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
from pathlib import Path

import psutil

from agent.sandbox import Sandbox
from harness.cdp import PageSession
from tests.conftest import AgentClient
from tests.helpers.sdk import SESSION_ID, sdk_client

from .conftest import animate, download, error, probe, replays, start, stop


def _ffmpeg_of(sandbox: Sandbox, replay_id: str) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and any(replay_id in part for part in cmdline) and "ffmpeg" in " ".join(cmdline):
            return proc
    raise AssertionError(f"no ffmpeg records {replay_id}")


def _when(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_3s_recording_of_an_animating_page_is_h264_of_that_length(
    agent: AgentClient, cdp_page: PageSession, tmp_path: Path
) -> None:
    await animate(cdp_page)
    body = await start(agent, framerate=10, max_duration_in_seconds=3)
    replay_id = body["replay_id"]
    assert body["started_at"] and "finished_at" not in body and body["has_audio"] is False
    assert body["replay_view_url"] == f"{agent.base_url}/replays/{replay_id}/view"
    # While recording: 202 with a Retry-After of at least a second.
    reply = await agent.get(f"/replays/{replay_id}")
    assert reply.status == 202, reply
    assert 1 <= int(reply.headers["Retry-After"]) <= 3
    data = await download(agent, replay_id)
    info = await probe(data, tmp_path)
    assert info["codec"] == "h264"
    assert abs(info["duration"] - 3.0) <= 0.5, info
    assert info["frames"] >= 25 and info["distinct_frames"] >= 10, info  # the page animates: frames change
    assert not info["audio"]
    (listed,) = [r for r in replays(await agent.get("/replays")) if r["replay_id"] == replay_id]
    assert listed["finished_at"] and _when(listed["finished_at"]) > _when(listed["started_at"])
    reply = await agent.get(f"/replays/{replay_id}")
    assert reply.status == 200 and reply.body == data

    # HTTP Range: a player can seek.
    size = len(reply.body)
    part = await agent.get(f"/replays/{replay_id}", headers={"Range": "bytes=100-199"})
    assert part.status == 206, part
    assert part.body == reply.body[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    tail = await agent.get(f"/replays/{replay_id}", headers={"Range": "bytes=-50"})
    assert tail.status == 206 and tail.body == reply.body[-50:]

    # The view page plays it (relative URL, so a path-prefixing proxy is fine).
    page = await agent.get(f"/replays/{replay_id}/view?jwt=abc")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'src="../{replay_id}?jwt=abc"' in page.body.decode()

    # Stopping again is a no-op.
    await stop(agent, replay_id)


async def test_a_sigkilled_ffmpeg_leaves_a_playable_file(
    agent: AgentClient, sandbox: Sandbox, cdp_page: PageSession, tmp_path: Path
) -> None:
    await animate(cdp_page)
    replay_id = (await start(agent, framerate=10))["replay_id"]
    await asyncio.sleep(2.5)
    os.kill(_ffmpeg_of(sandbox, replay_id).pid, signal.SIGKILL)
    data = await download(agent, replay_id)
    info = await probe(data, tmp_path)
    assert info["codec"] == "h264"
    # Up to the last whole fragment (one a second).
    assert 1.0 <= info["duration"] <= 3.0, info
    (listed,) = [r for r in replays(await agent.get("/replays")) if r["replay_id"] == replay_id]
    assert listed["finished_at"]


async def test_max_duration_ends_the_recording_by_itself(agent: AgentClient, tmp_path: Path) -> None:
    body = await start(agent, framerate=5, max_duration_in_seconds=2)
    reply = await agent.get(f"/replays/{body['replay_id']}")
    assert reply.status == 202 and 1 <= int(reply.headers["Retry-After"]) <= 2, reply
    info = await probe(await download(agent, body["replay_id"]), tmp_path)
    assert abs(info["duration"] - 2.0) <= 0.5, info


async def test_requests_the_agent_refuses(agent: AgentClient) -> None:
    assert "GPU" in error(await agent.post("/replays", {"framerate": 30}), 400)
    error(await agent.post("/replays", {"framerate": 0}), 400)
    error(await agent.post("/replays", {"framerate": 61}), 400)
    error(await agent.post("/replays", {"max_duration_in_seconds": 0}), 400)
    for reply in (
        await agent.get("/replays/nope"),
        await agent.post("/replays/nope/stop"),
        await agent.get("/replays/nope/view"),
        await agent.get("/replays/..%2F..%2Fetc"),
    ):
        error(reply, 404)


async def test_more_recordings_than_the_maximum_is_409(agent: AgentClient) -> None:
    # The session sandbox allows 2 at once (the default).
    first = await start(agent, framerate=2)
    second = await start(agent, framerate=2, record_audio=True)
    assert second["has_audio"] is False  # accepted, but there is no audio device
    try:
        assert "AGENT_REPLAYS_MAX_CONCURRENT" in error(await agent.post("/replays", {}), 409)
    finally:
        await stop(agent, first["replay_id"])
        await stop(agent, second["replay_id"])
    third = await start(agent, framerate=2)
    await stop(agent, third["replay_id"])


async def test_the_official_sdk_drives_start_list_download_stop(agent: AgentClient, tmp_path: Path) -> None:
    client, transport = sdk_client(agent.base_url)
    async with client:
        before = asyncio.get_running_loop().time()
        started = await client.browsers.replays.start(SESSION_ID, framerate=10, record_audio=False)
        await asyncio.sleep(1.5)
        listed = await client.browsers.replays.list(SESSION_ID)
        assert started.replay_id in [r.replay_id for r in listed]
        # Stop answers once the file is final: the download right after it is a 200, not a 202.
        await client.browsers.replays.stop(started.replay_id, id_or_name=SESSION_ID)
        elapsed = asyncio.get_running_loop().time() - before
        response = await client.browsers.replays.download(started.replay_id, id_or_name=SESSION_ID)
        data = await response.read()
        (item,) = [
            r for r in await client.browsers.replays.list(SESSION_ID) if r.replay_id == started.replay_id
        ]
        assert item.finished_at is not None and item.started_at is not None
    info = await probe(data, tmp_path)
    # It covers the time from start to stop (ffmpeg's start-up and the last frame: generous slack).
    assert info["codec"] == "h264" and 1.3 <= info["duration"] <= elapsed + 0.5, (info, elapsed)
    assert [s for _, _, s in transport.seen] == [201, 200, 200, 200, 200]


async def test_health_reports_recordings(agent: AgentClient) -> None:
    reply = await agent.get("/health")
    section = reply.json()["replays"]
    assert section["recording"] == 0 and section["stored"] >= 1 and section["ffmpeg"].endswith("ffmpeg")
