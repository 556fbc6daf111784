"""The official Python SDK (PyPI `kernel`) drives every /fs route through a prefix-stripping proxy."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import zipfile
from pathlib import Path

import kernel
import pytest

from agent.sandbox import Sandbox
from tests.agent.fs.conftest import names
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_drives_every_fs_route(sandbox: Sandbox, workdir: Path) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    fs = client.browsers.fs
    sid = SESSION_ID
    async with client:
        watch_id = (await fs.watch.start(sid, path=str(workdir), recursive=True)).watch_id
        assert watch_id
        stream = await fs.watch.events(watch_id, id_or_name=sid)

        data = os.urandom(200_000)
        await fs.write_file(sid, data, path=f"{workdir}/docs/a.bin", mode="640")
        assert (workdir / "docs" / "a.bin").read_bytes() == data
        assert stat.S_IMODE((workdir / "docs" / "a.bin").stat().st_mode) == 0o640
        read = await fs.read_file(sid, path=f"{workdir}/docs/a.bin")
        assert await read.read() == data

        await fs.create_directory(sid, path=f"{workdir}/made/deep", mode="750")
        assert stat.S_IMODE((workdir / "made" / "deep").stat().st_mode) == 0o750
        listing = await fs.list_files(sid, path=str(workdir))
        assert sorted(item.name for item in listing) == ["docs", "made"]
        info = await fs.file_info(sid, path=f"{workdir}/docs/a.bin")
        assert (info.size_bytes, info.is_dir, info.mode, info.name) == (200_000, False, "-rw-r-----", "a.bin")

        await fs.set_file_permissions(sid, path=f"{workdir}/docs/a.bin", mode="600", owner="0", group="0")
        assert stat.S_IMODE((workdir / "docs" / "a.bin").stat().st_mode) == 0o600
        await fs.move(sid, src_path=f"{workdir}/docs/a.bin", dest_path=f"{workdir}/docs/b.bin")
        assert (workdir / "docs" / "b.bin").read_bytes() == data

        await fs.upload(
            sid,
            files=[
                {"file": b"first", "dest_path": f"{workdir}/up/one.txt"},
                {"file": ("two.txt", b"second"), "dest_path": f"{workdir}/up/two.txt"},
            ],
        )
        assert (workdir / "up" / "one.txt").read_bytes() == b"first"
        assert (workdir / "up" / "two.txt").read_bytes() == b"second"

        zipped = await fs.download_dir_zip(sid, path=f"{workdir}/up")
        archive_bytes = await zipped.read()
        assert sorted(zipfile.ZipFile(io.BytesIO(archive_bytes)).namelist()) == ["one.txt", "two.txt"]
        await fs.upload_zip(sid, dest_path=f"{workdir}/unzipped", zip_file=archive_bytes)
        assert (workdir / "unzipped" / "two.txt").read_bytes() == b"second"

        await fs.delete_file(sid, path=f"{workdir}/docs/b.bin")
        await fs.delete_directory(sid, path=f"{workdir}/made")
        assert names(workdir) == ["docs", "unzipped", "up"]

        # The calls above come faster than a watch batch (~200 ms): which of them are reported as a
        # RENAME or as CREATE + DELETE depends on the batching; these hold either way.
        expected = {
            ("CREATE", f"{workdir}/docs"),
            ("CREATE", f"{workdir}/docs/b.bin"),
            ("DELETE", f"{workdir}/docs/b.bin"),
            ("CREATE", f"{workdir}/up/one.txt"),
            ("CREATE", f"{workdir}/unzipped/two.txt"),
            ("DELETE", f"{workdir}/made"),
        }
        seen: set[tuple[str, str]] = set()

        async def collect() -> None:
            async for event in stream:
                assert event.name == Path(event.path).name
                seen.add((event.type, event.path))
                if expected <= seen:
                    return

        await asyncio.wait_for(collect(), 20)
        await stream.close()
        await fs.watch.stop(watch_id, id_or_name=sid)

        with pytest.raises(kernel.NotFoundError):
            await fs.read_file(sid, path=f"{workdir}/missing")
        with pytest.raises(kernel.PermissionDeniedError):
            await fs.read_file(sid, path="/etc/hostname")
        with pytest.raises(kernel.BadRequestError):
            await fs.delete_file(sid, path=str(workdir))
        with pytest.raises(kernel.NotFoundError):
            await fs.watch.stop(watch_id, id_or_name=sid)

    routes = {path for _, path, _ in transport.seen}
    assert {
        "/fs/write_file", "/fs/read_file", "/fs/create_directory", "/fs/list_files", "/fs/file_info",
        "/fs/set_file_permissions", "/fs/move", "/fs/upload", "/fs/download_dir_zip", "/fs/upload_zip",
        "/fs/delete_file", "/fs/delete_directory", "/fs/watch", f"/fs/watch/{watch_id}/events",
        f"/fs/watch/{watch_id}",
    } <= routes  # fmt: skip
    assert all(status < 300 for _, path, status in transport.seen[:-4])
