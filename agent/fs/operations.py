"""The fs operations with JSON (or empty) requests and answers, transport-independent: typed request →
FsService → response model. Raw, multipart, zip and SSE routes are HTTP-only (agent/fs/http.py)."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import FS_KEY
from .models import (
    CreateDirectoryRequest,
    FileInfo,
    FsPath,
    MovePathRequest,
    SetFilePermissionsRequest,
    StartFsWatchRequest,
    WatchRef,
    WatchStarted,
)


async def _list_files(services: Services, req: FsPath) -> list[FileInfo]:
    return await services.get(FS_KEY).list_files(req.path)


async def _file_info(services: Services, req: FsPath) -> FileInfo:
    return await services.get(FS_KEY).file_info(req.path)


async def _create_directory(services: Services, req: CreateDirectoryRequest) -> None:
    await services.get(FS_KEY).create_directory(req.path, req.mode)


async def _delete_file(services: Services, req: FsPath) -> None:
    await services.get(FS_KEY).delete_file(req.path)


async def _delete_directory(services: Services, req: FsPath) -> None:
    await services.get(FS_KEY).delete_directory(req.path)


async def _set_file_permissions(services: Services, req: SetFilePermissionsRequest) -> None:
    await services.get(FS_KEY).set_file_permissions(req.path, req.mode, req.owner, req.group)


async def _move(services: Services, req: MovePathRequest) -> None:
    await services.get(FS_KEY).move(req.src_path, req.dest_path)


async def _start_watch(services: Services, req: StartFsWatchRequest) -> WatchStarted:
    watch = await services.get(FS_KEY).start_watch(req.path, req.recursive)
    return WatchStarted(watch.id)


async def _stop_watch(services: Services, req: WatchRef) -> None:
    await services.get(FS_KEY).watches.stop(req.watch_id)


# Status codes as the spec gives them; the answers without a body are empty.
LIST_FILES = Operation("listFiles", FsPath, _list_files)
FILE_INFO = Operation("fileInfo", FsPath, _file_info)
CREATE_DIRECTORY = Operation("createDirectory", CreateDirectoryRequest, _create_directory, status=201)
DELETE_FILE = Operation("deleteFile", FsPath, _delete_file)
DELETE_DIRECTORY = Operation("deleteDirectory", FsPath, _delete_directory)
SET_FILE_PERMISSIONS = Operation("setFilePermissions", SetFilePermissionsRequest, _set_file_permissions)
MOVE = Operation("movePath", MovePathRequest, _move)
START_WATCH = Operation("startFsWatch", StartFsWatchRequest, _start_watch, status=201)
STOP_WATCH = Operation("stopFsWatch", WatchRef, _stop_watch, status=204)

OPERATIONS: tuple[Operation[Any], ...] = (
    LIST_FILES,
    FILE_INFO,
    CREATE_DIRECTORY,
    DELETE_FILE,
    DELETE_DIRECTORY,
    SET_FILE_PERMISSIONS,
    MOVE,
    START_WATCH,
    STOP_WATCH,
)
