"""The /fs operations' typed requests, the shapes they answer with (spec `FileInfo`, `FileSystemEvent`) and
small value helpers."""

from __future__ import annotations

import dataclasses
import datetime
import os
import stat
from typing import Any, Literal

from ..timefmt import rfc3339

EventType = Literal["CREATE", "WRITE", "DELETE", "RENAME"]


# --- the typed requests of the /fs operations (fields: the spec's parameters and body fields) -----------
# A field with a spec default has no default here: validation always fills it in.


@dataclasses.dataclass(frozen=True, slots=True)
class FsPath:
    """Operations whose only field is a path: read_file, list_files, file_info, download_dir_zip (query),
    delete_file and delete_directory (body)."""

    path: str


@dataclasses.dataclass(frozen=True, slots=True)
class WriteFileRequest:
    path: str
    # None: a new file gets 644, a rewritten one keeps its mode (the body is raw bytes, read by http.py).
    mode: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CreateDirectoryRequest:
    path: str
    mode: str


@dataclasses.dataclass(frozen=True, slots=True)
class SetFilePermissionsRequest:
    path: str
    mode: str
    owner: str | None = None
    group: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MovePathRequest:
    src_path: str
    dest_path: str


@dataclasses.dataclass(frozen=True, slots=True)
class StartFsWatchRequest:
    path: str
    recursive: bool


@dataclasses.dataclass(frozen=True, slots=True)
class WatchRef:
    """The watch of streamFsEvents and stopFsWatch."""

    watch_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class WatchStarted:
    watch_id: str


# --- responses -------------------------------------------------------------------------------------------


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
            mod_time=rfc3339(datetime.datetime.fromtimestamp(st.st_mtime, tz=datetime.UTC)),
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
