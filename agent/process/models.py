"""Requests and results of the /process routes, parsed from (already validated) JSON and back."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import BadRequest

StreamName = Literal["stdout", "stderr"]
DEFAULT_ROWS = 24
DEFAULT_COLS = 80
# The exit code a timed-out process reports (as coreutils `timeout` does), next to `timed_out: true`.
TIMEOUT_EXIT_CODE = 124


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRequest:
    """What to run and how: the fields ProcessExecRequest and ProcessSpawnRequest share."""

    command: str
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    as_user: str | None = None
    as_root: bool = False
    timeout_sec: int | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CommandRequest:
        command: str = body["command"]
        if not command.strip():
            raise BadRequest("field 'command' must not be empty")
        env: dict[str, str] = dict(body.get("env") or {})
        for name in env:
            if not name or "=" in name:
                raise BadRequest(f"field 'env': invalid variable name {name!r}")
        strings = [command, *(body.get("args") or ()), body.get("cwd") or "", body.get("as_user") or ""]
        if any("\0" in s for s in [*strings, *env, *env.values()]):
            raise BadRequest("command, args, cwd, as_user and env must not contain NUL characters")
        as_user = body.get("as_user") or None
        as_root = bool(body.get("as_root"))
        if as_root and as_user is not None:
            raise BadRequest("give as_user or as_root, not both")
        timeout = body.get("timeout_sec")
        if timeout is not None and timeout < 0:
            raise BadRequest(f"field 'timeout_sec' must be >= 0, got {timeout}")
        return cls(
            command=command,
            args=tuple(body.get("args") or ()),
            cwd=body.get("cwd") or None,
            env=env,
            as_user=as_user,
            as_root=as_root,
            # 0 means no timeout, as the reference server does.
            timeout_sec=timeout or None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Terminal:
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS


@dataclasses.dataclass(frozen=True, slots=True)
class SpawnRequest:
    command: CommandRequest
    tty: Terminal | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SpawnRequest:
        exec_fields = {k: v for k, v in body.items() if k not in ("allocate_tty", "rows", "cols")}
        tty = None
        if body.get("allocate_tty"):
            tty = Terminal(rows=body.get("rows") or DEFAULT_ROWS, cols=body.get("cols") or DEFAULT_COLS)
        return cls(CommandRequest.from_body(exec_fields), tty)


# --- what a spawned process's output buffer holds ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OutputChunk:
    stream: StreamName
    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class ExitEvent:
    exit_code: int
    timed_out: bool


StreamItem = OutputChunk | ExitEvent


def item_size(item: StreamItem) -> int:
    # Per-item overhead counts too, so a flood of 1-byte chunks is bounded by memory, not only by payload.
    return (len(item.data) if isinstance(item, OutputChunk) else 0) + 96


def chunk_event(stream: StreamName, data: bytes) -> dict[str, Any]:
    return {"stream": stream, "data_b64": base64.b64encode(data).decode("ascii")}


def exit_event(event: ExitEvent) -> dict[str, Any]:
    return {"event": "exit", "exit_code": event.exit_code, "timed_out": event.timed_out}


# --- results -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_ms: int
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stdout_b64": base64.b64encode(self.stdout).decode("ascii"),
            "stderr_b64": base64.b64encode(self.stderr).decode("ascii"),
            "duration_ms": self.duration_ms,
            "timed_out": self.timed_out,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True, slots=True)
class SpawnResult:
    process_id: str
    pid: int
    started_at: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        return {"process_id": self.process_id, "pid": self.pid, "started_at": iso(self.started_at)}


@dataclasses.dataclass(frozen=True, slots=True)
class StatusReport:
    state: Literal["running", "exited"]
    exit_code: int | None
    cpu_pct: float
    mem_bytes: int
    timed_out: bool

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "cpu_pct": self.cpu_pct, "mem_bytes": self.mem_bytes}
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
            out["timed_out"] = self.timed_out
        return out


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
