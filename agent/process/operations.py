"""The process operations, transport-independent: typed request → ProcessService → response model."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import BadRequest
from ..operation import Operation
from ..services import Services
from . import PROCESS_KEY
from .models import (
    ExecResult,
    ProcessExecRequest,
    ProcessKillRequest,
    ProcessRef,
    ProcessResizeRequest,
    ProcessSpawnRequest,
    ProcessStdinRequest,
    SpawnResult,
    StatusReport,
)


async def _exec(services: Services, req: ProcessExecRequest) -> ExecResult:
    return await services.get(PROCESS_KEY).exec(req.command_request())


async def _spawn(services: Services, req: ProcessSpawnRequest) -> SpawnResult:
    return await services.get(PROCESS_KEY).spawn(req.spawn_request())


async def _status(services: Services, req: ProcessRef) -> StatusReport:
    service = services.get(PROCESS_KEY)
    return await service.status(service.get(req.process_id))


async def _stdin(services: Services, req: ProcessStdinRequest) -> dict[str, int]:
    service = services.get(PROCESS_KEY)
    managed = service.get(req.process_id)  # an unknown process is 404 before a bad body is 400
    try:
        data = base64.b64decode(req.data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("field 'data_b64' is not valid base64") from None
    return {"written_bytes": await service.write_stdin(managed, data, eof=req.eof)}


async def _kill(services: Services, req: ProcessKillRequest) -> dict[str, bool]:
    service = services.get(PROCESS_KEY)
    await service.kill(service.get(req.process_id), req.signal)
    return {"ok": True}


async def _resize(services: Services, req: ProcessResizeRequest) -> dict[str, bool]:
    service = services.get(PROCESS_KEY)
    service.resize(service.get(req.process_id), req.rows, req.cols)
    return {"ok": True}


EXEC = Operation("processExec", ProcessExecRequest, _exec)
SPAWN = Operation("processSpawn", ProcessSpawnRequest, _spawn)
STATUS = Operation("processStatus", ProcessRef, _status)
STDIN = Operation("processStdin", ProcessStdinRequest, _stdin)
KILL = Operation("processKill", ProcessKillRequest, _kill)
RESIZE = Operation("processResize", ProcessResizeRequest, _resize)

OPERATIONS: tuple[Operation[Any], ...] = (EXEC, SPAWN, STATUS, STDIN, KILL, RESIZE)
