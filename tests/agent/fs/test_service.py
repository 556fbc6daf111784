"""The fs service in process, on real files: moves across filesystems, the extraction cap, path rules.

These need what one sandbox cannot give: two filesystems (/dev/shm is tmpfs, the temp dir is on disk) and a
small extraction cap, so they drive `FsService` directly, without confinement to a root.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.config import Config
from agent.errors import BadRequest, Forbidden, NotFound
from agent.fs.paths import FsPaths
from agent.fs.service import FsService
from agent.fs.zipin import Limits, extract
from tests.agent.fs.conftest import names


@pytest.fixture
async def service() -> AsyncIterator[FsService]:
    fs = FsService(Config(fs_root=""))
    yield fs
    await fs.close()


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="agent-fs-disk-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    directory = Path(tempfile.mkdtemp(prefix="agent-fs-shm-", dir="/dev/shm"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def test_move_across_filesystems(service: FsService, disk_dir: Path, shm_dir: Path) -> None:
    assert os.stat(disk_dir).st_dev != os.stat(shm_dir).st_dev
    (shm_dir / "file.bin").write_bytes(b"payload" * 1000)
    os.chmod(shm_dir / "file.bin", 0o640)
    await service.move(str(shm_dir / "file.bin"), str(disk_dir / "moved" / "file.bin"))
    assert (disk_dir / "moved" / "file.bin").read_bytes() == b"payload" * 1000
    assert (disk_dir / "moved" / "file.bin").stat().st_mode & 0o777 == 0o640
    assert not (shm_dir / "file.bin").exists()

    tree = disk_dir / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_bytes(b"f")
    (tree / "link").symlink_to("a/b/f")
    await service.move(str(tree), str(shm_dir / "tree"))
    assert (shm_dir / "tree" / "a" / "b" / "f").read_bytes() == b"f"
    assert os.readlink(shm_dir / "tree" / "link") == "a/b/f"
    assert not tree.exists()
    assert [n for n in names(shm_dir) + names(disk_dir) if n.startswith(".")] == []

    # A destination that cannot be replaced: nothing copied, the source stays.
    (disk_dir / "full" / "x").mkdir(parents=True)
    with pytest.raises(BadRequest):
        await service.move(str(shm_dir / "tree"), str(disk_dir / "full"))
    assert (shm_dir / "tree" / "a" / "b" / "f").exists()
    assert names(disk_dir) == ["full", "moved"]


def bomb(entries: int, size: int) -> bytes:
    buffer = io.BytesIO()
    zero = b"\0" * (1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(entries):
            with archive.open(f"zeros-{i}.bin", "w") as out:
                for _ in range(size >> 20):
                    out.write(zero)
    return buffer.getvalue()


def test_a_real_zip_bomb_stops_at_the_cap(disk_dir: Path) -> None:
    data = bomb(3, 32 << 20)  # 96 MiB of zeros in well under 1 MiB
    assert len(data) < 1 << 20
    paths = FsPaths("")
    with pytest.raises(BadRequest, match="more than"):
        extract(io.BytesIO(data), str(disk_dir / "out"), Limits(max_bytes=64 << 20, max_entries=100), paths)
    assert names(disk_dir) == []
    extract(io.BytesIO(data), str(disk_dir / "out"), Limits(max_bytes=128 << 20, max_entries=100), paths)
    assert names(disk_dir / "out") == ["zeros-0.bin", "zeros-1.bin", "zeros-2.bin"]
    with pytest.raises(BadRequest, match="entries"):
        extract(io.BytesIO(data), str(disk_dir / "again"), Limits(max_bytes=1 << 30, max_entries=2), paths)


def test_paths_rules(disk_dir: Path) -> None:
    (disk_dir / "root" / "inside").mkdir(parents=True)
    (disk_dir / "root" / "up").symlink_to("..")
    (disk_dir / "root" / "in-link").symlink_to("inside")
    paths = FsPaths(str(disk_dir / "root"))
    root = str(disk_dir / "root")
    with pytest.raises(BadRequest, match="absolute"):
        paths.resolve("relative")
    with pytest.raises(BadRequest, match="NUL"):
        paths.resolve(root + "/a\x00b")
    assert paths.resolve(root + "/in-link") == root + "/inside"
    assert paths.resolve_entry(root + "/in-link") == root + "/in-link"  # the link itself
    assert paths.resolve(root + "/inside/../inside") == root + "/inside"
    for escape in ("/", root + "/..", root + "/up", root + "/up/other", root + "/inside/../../x"):
        with pytest.raises(Forbidden):
            paths.resolve(escape)
    assert paths.resolve_entry(root + "/up") == root + "/up"  # deleting the link is fine
    assert paths.is_root(root)
    assert FsPaths("").resolve("/etc") == "/etc"


async def test_service_errors_are_api_errors(service: FsService, disk_dir: Path) -> None:
    with pytest.raises(NotFound):
        await service.file_info(str(disk_dir / "missing"))
    with pytest.raises(Forbidden, match="root"):
        await service.delete_directory("/")
