"""The shapes /fs routes answer with (spec `FileInfo`, `FileSystemEvent`) and small value helpers."""

from __future__ import annotations

import dataclasses
import datetime
import os
import stat
from typing import Any, Literal

EventType = Literal["CREATE", "WRITE", "DELETE", "RENAME"]


@dataclasses.dataclass(frozen=True)
class FileInfo:
    name: str
    path: str
    size_bytes: int
    is_dir: bool
    mod_time: str
    mode: str

    @classmethod
    def from_stat(cls, path: str, st: os.stat_result, name: str | None = None) -> FileInfo:
        is_dir = stat.S_ISDIR(st.st_mode)
        return cls(
            name=name if name is not None else display_name(path),
            path=path,
            size_bytes=0 if is_dir else st.st_size,  # the spec: 0 for directories
            is_dir=is_dir,
            mod_time=iso_time(st.st_mtime),
            mode=stat.filemode(st.st_mode),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FsEvent:
    type: EventType
    path: str
    name: str
    is_dir: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def display_name(path: str) -> str:
    return os.path.basename(path.rstrip("/")) or "/"


def iso_time(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def parse_mode(text: str) -> int:
    """An octal mode string (the spec's `^[0-7]{3,4}$`, already validated) as bits."""
    return int(text, 8)


def join_client_path(base: str, rel: str) -> str:
    """`base` as the client wrote it plus a relative part (no doubled slash when base is `/`)."""
    base = base.rstrip("/")
    rel = rel.strip("/")
    if not rel:
        return base or "/"
    return f"{base}/{rel}"
