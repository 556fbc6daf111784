"""A full disk (issue 13, item 5): a 2 MiB tmpfs mounted inside the reliability sandbox's fs root. Writing
more than it holds through PUT /fs/write_file (declared length and chunked), POST /fs/upload and POST
/fs/upload_zip answers 507 insufficient_storage with the spec's Error body; the file that was there is
intact; no temp file or half-extracted directory is left; the agent is healthy after."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from agent.sandbox import Sandbox

pytestmark = pytest.mark.timeout(120)

TMPFS_BYTES = 2 * 1024 * 1024
OLD = b"the old content\n"
TOO_BIG = 3 * 1024 * 1024  # more than the whole tmpfs


@pytest.fixture(scope="module")
def full_dir(rbox: Sandbox) -> Iterator[Path]:
    """A tmpfs of TMPFS_BYTES inside the fs root (`mount` needs root); unmounted and removed after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = rbox.state_dir / "fs" / f"full-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(directory)], check=True
        )
        try:
            yield directory
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def target(full_dir: Path) -> Iterator[Path]:
    """A fresh directory on the tmpfs holding one file with OLD in it; emptied after."""
    directory = full_dir / uuid.uuid4().hex[:8]
    directory.mkdir()
    path = directory / "file.bin"
    path.write_bytes(OLD)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def http(rbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=rbox.agent_url, timeout=aiohttp.ClientTimeout(total=60)) as s:
        yield s
        async with s.get("/health") as response:
            assert response.status == 200, await response.text()


async def assert_507(response: aiohttp.ClientResponse) -> None:
    body = await response.read()
    assert response.status == 507, (response.status, body[:300])
    error = json.loads(body)
    assert error["code"] == "insufficient_storage", error
    assert "no space left" in error["message"], error


def content(path: Path) -> bytes:
    return path.read_bytes()  # small files: a blocking read in a test is fine


def assert_untouched(path: Path) -> None:
    """The old file is as it was and nothing else is in its directory (no temp file, no staging dir)."""
    assert path.read_bytes() == OLD
    assert sorted(os.listdir(path.parent)) == [path.name]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_write_file_on_a_full_disk_is_507_and_the_old_file_stays(
    http: aiohttp.ClientSession, target: Path, declared: bool
) -> None:
    payload = os.urandom(TOO_BIG)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(payload), 64 * 1024):
            yield payload[at : at + 64 * 1024]

    body = payload if declared else chunks()
    async with http.put("/fs/write_file", params={"path": str(target)}, data=body) as response:
        await assert_507(response)
    assert_untouched(target)
    # The disk is usable again at once: a write that fits succeeds.
    async with http.put("/fs/write_file", params={"path": str(target)}, data=b"new") as response:
        assert response.status == 201, await response.text()
    assert content(target) == b"new"


async def test_upload_on_a_full_disk_is_507_and_the_old_file_stays(
    http: aiohttp.ClientSession, target: Path
) -> None:
    form = aiohttp.FormData()
    form.add_field("files[0][dest_path]", str(target))
    form.add_field("files[0][file]", os.urandom(TOO_BIG), filename="file.bin")
    async with http.post("/fs/upload", data=form) as response:
        await assert_507(response)
    assert_untouched(target)


async def test_upload_zip_on_a_full_disk_is_507_and_nothing_is_extracted(
    http: aiohttp.ClientSession, target: Path
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.txt", b"fits\n")
        zf.writestr("file.bin", b"z" * TOO_BIG)  # compresses to a few KB: only extracting fills the disk
    form = aiohttp.FormData()
    form.add_field("dest_path", str(target.parent))
    form.add_field("zip_file", archive.getvalue(), filename="a.zip", content_type="application/zip")
    async with http.post("/fs/upload_zip", data=form) as response:
        await assert_507(response)
    assert_untouched(target)  # neither small.txt nor a staging directory is left beside it
