"""The /process operations' typed requests, what the service takes and gives, and their JSON shapes."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import BadRequest
from ..timefmt import rfc3339

StreamName = Literal["stdout", "stderr"]
DEFAULT_ROWS = 24
DEFAULT_COLS = 80
# The exit code a timed-out process reports (as coreutils `timeout` does), next to `timed_out: true`.
TIMEOUT_EXIT_CODE = 124


# --- what the service runs ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRequest:
    """What to run and how, checked (`ProcessExecRequest.command_request()`): what the service takes."""

    command: str
    args: tuple[str, ...] = ()
    cwd: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    as_user: str | None = None
    as_root: bool = False
    timeout_sec: int | None = None  # None: no timeout


@dataclasses.dataclass(frozen=True, slots=True)
class Terminal:
    # The spec's defaults for ProcessSpawnRequest rows/cols (for in-process callers; requests carry them).
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS


@dataclasses.dataclass(frozen=True, slots=True)
class SpawnRequest:
    command: CommandRequest
    tty: Terminal | None


def _command(
    command: str,
    args: tuple[str, ...],
    cwd: str | None,
    env: Mapping[str, str],
    as_user: str | None,
    as_root: bool,
    timeout_sec: int | None,
) -> CommandRequest:
    """The checks the spec cannot express, and the request's fields as the service takes them."""
    if not command.strip():
        raise BadRequest("field 'command' must not be empty")
    for name in env:
        if not name or "=" in name:
            raise BadRequest(f"field 'env': invalid variable name {name!r}")
    strings = [command, *args, cwd or "", as_user or ""]
    if any("\0" in s for s in [*strings, *env, *env.values()]):
        raise BadRequest("command, args, cwd, as_user and env must not contain NUL characters")
    as_user = as_user or None
    if as_root and as_user is not None:
        raise BadRequest("give as_user or as_root, not both")
    if timeout_sec is not None and timeout_sec < 0:
        raise BadRequest(f"field 'timeout_sec' must be >= 0, got {timeout_sec}")
    return CommandRequest(
        command=command,
        args=args,
        cwd=cwd or None,
        env=dict(env),
        as_user=as_user,
        as_root=as_root,
        # 0 means no timeout, as the reference server does.
        timeout_sec=timeout_sec or None,
    )


# --- the typed requests of the /process operations (fields: the spec's parameters and body fields) -------
# A field with a spec default has no default here: validation always fills it in.


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessExecRequest:
    command: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    as_root: bool
    cwd: str | None = None
    as_user: str | None = None
    timeout_sec: int | None = None

    def command_request(self) -> CommandRequest:
        return _command(
            self.command, self.args, self.cwd, self.env, self.as_user, self.as_root, self.timeout_sec
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessSpawnRequest:
    command: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    as_root: bool
    allocate_tty: bool
    rows: int
    cols: int
    cwd: str | None = None
    as_user: str | None = None
    timeout_sec: int | None = None

    def spawn_request(self) -> SpawnRequest:
        command = _command(
            self.command, self.args, self.cwd, self.env, self.as_user, self.as_root, self.timeout_sec
        )
        return SpawnRequest(command, Terminal(self.rows, self.cols) if self.allocate_tty else None)


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessRef:
    """The operations whose only field is the process: status, stdout stream."""

    process_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessStdinRequest:
    process_id: str
    data_b64: str
    eof: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessKillRequest:
    process_id: str
    signal: Literal["TERM", "KILL", "INT", "HUP"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessResizeRequest:
    process_id: str
    rows: int
    cols: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessAttachRequest:
    process_id: str
    replay: bool


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
        return {"process_id": self.process_id, "pid": self.pid, "started_at": rfc3339(self.started_at)}


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
