"""Typed requests of the replay operations, the recording's metadata on disk, and the response model."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any


@dataclasses.dataclass(frozen=True)
class StartReplayRequest:
    framerate: int
    record_audio: bool
    max_duration_in_seconds: int | None = None


@dataclasses.dataclass(frozen=True)
class ListReplaysRequest:
    pass


@dataclasses.dataclass(frozen=True)
class ReplayIdRequest:
    """GET /replays/{replay_id}, its /stop and its /view."""

    replay_id: str


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass
class ReplayMeta:
    """What `<state_dir>/replays/<id>/replay.json` holds: enough to list and serve it after a restart."""

    replay_id: str
    framerate: int
    max_duration_in_seconds: int | None
    # The size ffmpeg was told to stop at (-fs): what the recording reserves of the disk budget.
    limit_bytes: int
    started_at: float  # unix time
    finished_at: float | None = None
    # Why it ended: stopped, max_duration, size_limit, display_lost, ffmpeg_failed, killed, agent_restart.
    end_reason: str | None = None
    size_bytes: int = 0
    # The ffmpeg pid while recording (a restarted agent ends a recording its predecessor left running).
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass(frozen=True)
class Replay:
    """BrowserReplay. `replay_view_url` is the view page's path here; the HTTP adapter makes it absolute."""

    replay_id: str
    started_at: float | None
    finished_at: float | None
    replay_view_url: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"replay_id": self.replay_id, "started_at": iso(self.started_at)}
        if self.finished_at is not None:  # absent while recording
            out["finished_at"] = iso(self.finished_at)
        return {**out, "replay_view_url": self.replay_view_url, "has_audio": False}

    @classmethod
    def of(cls, meta: ReplayMeta) -> Replay:
        return cls(meta.replay_id, meta.started_at, meta.finished_at, f"/replays/{meta.replay_id}/view")
