"""The disk budget and the concurrency limit, on a ReplayService of the test's own (real ffmpeg, recording
the session sandbox's display), with budgets small enough to reach in seconds."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import Config
from agent.errors import Conflict
from agent.operation import build
from agent.replays.models import ReplayIdRequest, StartReplayRequest
from agent.replays.service import ReplayService
from agent.sandbox import Sandbox
from harness.cdp import PageSession

from .conftest import SPEC, animate, probe

MB = 1024 * 1024


def test_the_spec_defaults_reach_the_typed_request() -> None:
    op = SPEC.operations[("POST", "/replays")]
    body = SPEC.with_defaults(op.body_schema, {})
    assert isinstance(body, dict)
    assert build(StartReplayRequest, body) == StartReplayRequest(framerate=10, record_audio=False)
    assert build(ReplayIdRequest, {"replay_id": "x"}).replay_id == "x"


@pytest.fixture
async def service(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[ReplayService]:
    config = dataclasses.replace(
        Config(),
        display=sandbox.config.display,
        state_dir=tmp_path / "state",
        replays_max_concurrent=3,
        replays_max_bytes=int(1.5 * MB),
        replays_total_bytes=3 * MB,
    )
    svc = ReplayService(config)
    await svc.open()
    yield svc
    await svc.close()
    assert not [r for r in svc.replays() if r.finished_at is None]


async def test_a_recording_ends_by_itself_at_its_size_limit_and_old_ones_make_room(
    service: ReplayService, cdp_page: PageSession, tmp_path: Path
) -> None:
    await animate(cdp_page)
    first = await service.start(StartReplayRequest(framerate=20, record_audio=False))
    await asyncio.wait_for(service.get(first.replay_id).finished, 60)
    assert first.end_reason == "size_limit", first
    # About the limit (ffmpeg checks it between fragments: it may write one more), and playable.
    assert 1.0 * MB <= first.size_bytes <= 3 * MB, first
    info = await probe(service.get(first.replay_id).video.read_bytes(), tmp_path)
    assert info["codec"] == "h264" and info["duration"] > 0

    # 1.5 MB stored + 1.5 MB reserved by a new one > 3 MB: the oldest finished recording goes.
    second = await service.start(StartReplayRequest(framerate=2, record_audio=False))
    assert [r.replay_id for r in service.replays()] == [second.replay_id]
    assert not (service.root / first.replay_id).exists()

    # Two running recordings reserve the whole budget: a third is refused, not started.
    third = await service.start(StartReplayRequest(framerate=2, record_audio=False))
    with pytest.raises(Conflict, match="budget"):
        await service.start(StartReplayRequest(framerate=2, record_audio=False))
    await service.stop(second.replay_id)
    await service.stop(third.replay_id)
    assert {r.end_reason for r in service.replays()} == {"stopped"}
