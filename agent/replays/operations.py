"""The replay operations, transport-independent (the download and the view page are HTTP-only: files)."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import REPLAYS_KEY
from .models import ListReplaysRequest, Replay, ReplayIdRequest, StartReplayRequest


async def _start(services: Services, req: StartReplayRequest) -> Replay:
    return Replay.of(await services.get(REPLAYS_KEY).start(req))


async def _list(services: Services, req: ListReplaysRequest) -> list[Replay]:
    return [Replay.of(meta) for meta in services.get(REPLAYS_KEY).replays()]


async def _stop(services: Services, req: ReplayIdRequest) -> None:
    await services.get(REPLAYS_KEY).stop(req.replay_id)


START = Operation("startBrowserReplayRecording", StartReplayRequest, _start, status=201)
LIST = Operation("listBrowsersReplays", ListReplaysRequest, _list)
STOP = Operation("stopBrowserReplayRecording", ReplayIdRequest, _stop)
OPERATIONS: tuple[Operation[Any], ...] = (START, LIST, STOP)
