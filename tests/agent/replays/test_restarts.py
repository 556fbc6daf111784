"""Recordings across restarts of Chromium, the agent and Xvfb, in a sandbox of their own."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox
from tests.conftest import AgentClient

from .conftest import download, probe, replays, start, stop


@pytest.fixture(scope="module")
def rbox() -> Iterator[Sandbox]:
    with private_sandbox("agent-test-replays-") as box:
        yield box


@pytest.fixture
async def ragent(rbox: Sandbox) -> AsyncIterator[AgentClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield AgentClient(rbox.agent_url, session)


def _ffmpegs(replay_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ffmpeg" in cmdline and replay_id in cmdline:
            found.append(proc)
    return found


async def _supervisorctl(box: Sandbox, *args: str) -> None:
    await asyncio.to_thread(box.supervisorctl, *args)


async def test_a_recording_goes_on_while_chromium_restarts(
    rbox: Sandbox, ragent: AgentClient, tmp_path: Path
) -> None:
    replay_id = (await start(ragent, framerate=5))["replay_id"]
    await _supervisorctl(rbox, "restart", "chromium")
    await asyncio.sleep(1)
    assert (await ragent.get(f"/replays/{replay_id}")).status == 202
    await stop(ragent, replay_id)
    info = await probe(await download(ragent, replay_id), tmp_path)
    assert info["codec"] == "h264" and info["duration"] >= 1.5, info


@pytest.mark.parametrize("how", ["SIGKILL", "restart"])
async def test_recordings_are_listed_and_playable_after_the_agent_restarts(
    rbox: Sandbox, ragent: AgentClient, tmp_path: Path, how: str
) -> None:
    replay_id = (await start(ragent, framerate=5))["replay_id"]
    await asyncio.sleep(2.5)
    if how == "SIGKILL":
        # ffmpeg gets SIGINT when the agent dies (setpriv --pdeathsig) and finishes its file.
        os.kill(int(rbox.supervisorctl("pid", "agent").strip()), signal.SIGKILL)
        await asyncio.sleep(1.5)  # supervisord notices and starts it again
    else:
        await _supervisorctl(rbox, "restart", "agent")
    await asyncio.to_thread(rbox.wait_ready, 60)
    (listed,) = [r for r in replays(await ragent.get("/replays")) if r["replay_id"] == replay_id]
    assert listed["finished_at"], listed
    assert not _ffmpegs(replay_id)
    info = await probe(await download(ragent, replay_id), tmp_path)
    assert info["codec"] == "h264" and info["duration"] >= 1.0, info
    # Those of the earlier tests are still listed too.
    assert len(replays(await ragent.get("/replays"))) >= 2


async def test_a_recording_ends_cleanly_when_xvfb_dies(
    rbox: Sandbox, ragent: AgentClient, tmp_path: Path
) -> None:
    replay_id = (await start(ragent, framerate=5))["replay_id"]
    await asyncio.sleep(2.5)
    await _supervisorctl(rbox, "stop", "xvfb")
    try:
        data = await download(ragent, replay_id)
    finally:
        await _supervisorctl(rbox, "start", "xvfb")
    info = await probe(data, tmp_path)
    assert info["codec"] == "h264" and info["duration"] >= 1.0, info
    assert not _ffmpegs(replay_id)
