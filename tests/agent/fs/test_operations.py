"""The fs operations through the control link's path (`Operations.call`): validated as HTTP validates, the
spec's defaults applied, typed requests built, a real FsService on real files."""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config
from agent.errors import BadRequest, NotFound
from agent.fs import FS_KEY
from agent.fs.models import CreateDirectoryRequest, FileInfo, StartFsWatchRequest, WriteFileRequest
from agent.fs.operations import OPERATIONS
from agent.fs.service import FsService
from agent.operation import Operations, build
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()


def defaulted(schema: str, body: dict[str, Any]) -> Any:
    return SPEC.with_defaults({"$ref": f"#/components/schemas/{schema}"}, body)


def test_the_spec_defaults_reach_the_typed_requests() -> None:
    assert build(CreateDirectoryRequest, defaulted("CreateDirectoryRequest", {"path": "/d"})) == (
        CreateDirectoryRequest("/d", "755")
    )
    assert build(StartFsWatchRequest, defaulted("StartFsWatchRequest", {"path": "/d"})) == (
        StartFsWatchRequest("/d", False)
    )
    # write_file's mode has no default: without one, a rewritten file keeps its mode.
    assert build(WriteFileRequest, {"path": "/f"}) == WriteFileRequest("/f", None)


def test_timestamps_always_have_microseconds_and_z() -> None:
    whole_second = datetime.datetime(2026, 11, 28, 9, 15, 2, tzinfo=datetime.UTC).timestamp()
    info = FileInfo.from_stat("/f", os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, 3, 0, 0, 0)))
    assert info.mod_time == "1970-01-01T00:00:00.000000Z"
    st = os.stat_result((stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, 3, 0, int(whole_second), 0))
    assert FileInfo.from_stat("/f", st).mod_time == "2026-11-28T09:15:02.000000Z"


@pytest.fixture
async def operations() -> AsyncIterator[Operations]:
    services = Services()
    service = FsService(Config(fs_root=""))
    services.provide(FS_KEY, service)
    yield Operations(SPEC, services, OPERATIONS)
    await service.close()


async def test_directories_files_and_moves_through_operations_call(
    operations: Operations, tmp_path: Path
) -> None:
    base = str(tmp_path)
    assert await operations.call("createDirectory", {"path": f"{base}/a/b"}) is None
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o755  # the spec's default mode
    (tmp_path / "a" / "f.txt").write_bytes(b"hello")
    listing = await operations.call("listFiles", {"path": f"{base}/a"})
    assert [(e["name"], e["is_dir"], e["size_bytes"]) for e in listing] == [
        ("b", True, 0),
        ("f.txt", False, 5),
    ]
    info = await operations.call("fileInfo", {"path": f"{base}/a/f.txt"})
    assert info["path"] == f"{base}/a/f.txt" and info["mode"] == "-rw-r--r--"
    await operations.call("setFilePermissions", {"path": f"{base}/a/f.txt", "mode": "600"})
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "f.txt").st_mode) == 0o600
    await operations.call("movePath", {"src_path": f"{base}/a/f.txt", "dest_path": f"{base}/g.txt"})
    assert (tmp_path / "g.txt").read_bytes() == b"hello"
    await operations.call("deleteFile", {"path": f"{base}/g.txt"})
    await operations.call("deleteDirectory", {"path": f"{base}/a"})
    assert os.listdir(tmp_path) == []


async def test_watches_start_and_stop_through_operations_call(operations: Operations, tmp_path: Path) -> None:
    started = await operations.call("startFsWatch", {"path": str(tmp_path)})
    assert set(started) == {"watch_id"}
    assert await operations.call("stopFsWatch", {"watch_id": started["watch_id"]}) is None
    with pytest.raises(NotFound):
        await operations.call("stopFsWatch", {"watch_id": started["watch_id"]})


async def test_the_control_link_path_validates_as_http_does(operations: Operations, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="mode"):
        await operations.call("createDirectory", {"path": "/tmp/x", "mode": "999"})
    with pytest.raises(BadRequest, match="unknown field"):
        await operations.call("deleteFile", {"path": "/tmp/x", "recursive": True})
    with pytest.raises(BadRequest, match="no such user"):
        await operations.call(
            "setFilePermissions", {"path": str(tmp_path), "mode": "755", "owner": "no-such-user-xyz"}
        )
