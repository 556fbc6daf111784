"""The process operations through the control link's path (`Operations.call`): validated as HTTP validates,
the spec's defaults applied, typed requests built, a real ProcessService running real children."""

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.config import Config
from agent.errors import BadRequest, NotFound
from agent.operation import Operations, build
from agent.process import PROCESS_KEY
from agent.process.models import (
    CommandRequest,
    ProcessExecRequest,
    ProcessKillRequest,
    ProcessSpawnRequest,
    ProcessStdinRequest,
    SpawnRequest,
    Terminal,
)
from agent.process.operations import OPERATIONS
from agent.process.service import ProcessService
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()


def defaulted(schema: str, body: dict[str, Any]) -> Any:
    return SPEC.with_defaults({"$ref": f"#/components/schemas/{schema}"}, body)


def test_the_spec_defaults_reach_the_typed_requests() -> None:
    req = build(ProcessExecRequest, defaulted("ProcessExecRequest", {"command": "true"}))
    assert req == ProcessExecRequest("true", (), {}, False)
    assert req.command_request() == CommandRequest("true")
    spawn = build(
        ProcessSpawnRequest, defaulted("ProcessSpawnRequest", {"command": "sh", "allocate_tty": True})
    )
    assert (spawn.allocate_tty, spawn.rows, spawn.cols) == (True, 24, 80)
    assert spawn.spawn_request() == SpawnRequest(CommandRequest("sh"), Terminal())
    no_tty = build(ProcessSpawnRequest, defaulted("ProcessSpawnRequest", {"command": "sh"}))
    assert no_tty.spawn_request().tty is None
    assert (
        build(ProcessKillRequest, {"process_id": "p", **defaulted("ProcessKillRequest", {})}).signal == "TERM"
    )
    stdin = build(
        ProcessStdinRequest, {"process_id": "p", **defaulted("ProcessStdinRequest", {"data_b64": ""})}
    )
    assert stdin.eof is False


def test_the_checks_the_spec_cannot_express_still_apply() -> None:
    def command(**fields: Any) -> CommandRequest:
        return build(ProcessExecRequest, defaulted("ProcessExecRequest", fields)).command_request()

    assert command(command="x", timeout_sec=0).timeout_sec is None  # 0: no timeout
    with pytest.raises(BadRequest, match="must not be empty"):
        command(command="  ")
    with pytest.raises(BadRequest, match="not both"):
        command(command="x", as_user="nobody", as_root=True)
    with pytest.raises(BadRequest, match="invalid variable name"):
        command(command="x", env={"A=B": "c"})
    with pytest.raises(BadRequest, match="NUL"):
        command(command="x", args=["a\0b"])


@pytest.fixture
async def operations() -> AsyncIterator[Operations]:
    services = Services()
    service = ProcessService(Config(process_kill_grace_s=0.5))
    await service.start()
    services.provide(PROCESS_KEY, service)
    yield Operations(SPEC, services, OPERATIONS)
    await service.close()


async def test_exec_through_operations_call(operations: Operations) -> None:
    result = await operations.call(
        "processExec", {"command": "printf", "args": ["%s", "hi"], "env": {"A": "1"}}
    )
    assert result["exit_code"] == 0 and not result["timed_out"]
    assert base64.b64decode(result["stdout_b64"]) == b"hi"
    with pytest.raises(BadRequest, match="unknown field"):
        await operations.call("processExec", {"command": "true", "rows": 3})


async def test_spawn_stdin_status_resize_and_kill_through_operations_call(operations: Operations) -> None:
    spawned = await operations.call("processSpawn", {"command": "cat", "allocate_tty": True})
    assert datetime.datetime.fromisoformat(spawned["started_at"]).tzinfo is not None
    assert spawned["started_at"].endswith("Z") and len(spawned["started_at"].split(".")[1]) == 7
    pid = spawned["process_id"]
    written = await operations.call(
        "processStdin", {"process_id": pid, "data_b64": base64.b64encode(b"x\n").decode()}
    )
    assert written == {"written_bytes": 2}
    assert await operations.call("processResize", {"process_id": pid, "rows": 30, "cols": 100}) == {
        "ok": True
    }
    assert (await operations.call("processStatus", {"process_id": pid}))["state"] == "running"
    assert await operations.call("processKill", {"process_id": pid, "signal": "TERM"}) == {"ok": True}
    with pytest.raises(NotFound):
        await operations.call("processStatus", {"process_id": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(NotFound):  # the process first, as over HTTP: an unknown one is 404, not a bad body
        await operations.call(
            "processStdin", {"process_id": "00000000-0000-0000-0000-000000000000", "data_b64": "!!"}
        )
