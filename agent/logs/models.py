"""The typed request of GET /logs/stream and the LogEvent it streams."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class LogsStreamRequest:
    source: Literal["path", "supervisor"]
    follow: bool  # the spec's default: true
    path: str | None = None
    supervisor_process: str | None = None


@dataclasses.dataclass(frozen=True)
class LogEvent:
    timestamp: str  # RFC 3339, UTC, microseconds, `Z`: when the agent read the line
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "log", "timestamp": self.timestamp, "message": self.message}
