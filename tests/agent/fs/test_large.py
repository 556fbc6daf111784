"""Big files stream in constant memory; many requests at once do not stall each other."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from agent.sandbox import Sandbox
from harness.rss import PeakRss
from tests.agent.fs.conftest import FsClient, agent_pid, sha256

MiB = 1024 * 1024
BIG = 400 * MiB
RSS_BOUND = 64 * MiB


async def test_several_hundred_mib_round_trip_in_bounded_memory(
    http: aiohttp.ClientSession, sandbox: Sandbox, workdir: Path
) -> None:
    target = workdir / "big.bin"
    sent = hashlib.sha256()
    block = os.urandom(MiB)

    async def body() -> AsyncIterator[bytes]:
        for i in range(BIG // MiB):
            chunk = i.to_bytes(8, "big") + block[8:]  # every MiB differs: reordering would show
            sent.update(chunk)
            yield chunk

    url = sandbox.agent_url
    try:
        with PeakRss(agent_pid(sandbox)) as rss:
            async with http.put(
                f"{url}/fs/write_file", params={"path": str(target)}, data=body(),
                headers={"Content-Type": "application/octet-stream"},
            ) as response:  # fmt: skip
                assert response.status == 201, await response.text()
        assert rss.growth < RSS_BOUND, f"agent RSS grew {rss.growth / MiB:.0f} MiB writing {BIG // MiB} MiB"
        assert target.stat().st_size == BIG

        received = hashlib.sha256()
        with PeakRss(agent_pid(sandbox)) as rss:
            async with http.get(f"{url}/fs/read_file", params={"path": str(target)}) as response:
                assert response.status == 200
                assert response.content_length == BIG
                async for chunk in response.content.iter_chunked(MiB):
                    received.update(chunk)
        assert rss.growth < RSS_BOUND, f"agent RSS grew {rss.growth / MiB:.0f} MiB reading {BIG // MiB} MiB"
        assert received.hexdigest() == sent.hexdigest()

        with PeakRss(agent_pid(sandbox)) as rss:
            async with http.get(f"{url}/fs/download_dir_zip", params={"path": str(workdir)}) as response:
                assert response.status == 200
                size = 0
                async for chunk in response.content.iter_chunked(MiB):
                    size += len(chunk)
        assert rss.growth < RSS_BOUND, f"agent RSS grew {rss.growth / MiB:.0f} MiB zipping {BIG // MiB} MiB"
        assert size > 0
    finally:
        target.unlink(missing_ok=True)


async def test_fifty_concurrent_reads_and_writes(
    fs: FsClient, http: aiohttp.ClientSession, sandbox: Sandbox, workdir: Path
) -> None:
    blobs = {f"r{i}": os.urandom(MiB + i) for i in range(25)}
    for name, data in blobs.items():
        (workdir / name).write_bytes(data)
    uploads = {f"w{i}": os.urandom(MiB + i) for i in range(25)}

    # A client that trickles its upload holds a request open the whole time: nobody waits for it.
    release = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"slow start "
        await release.wait()
        yield b"and the end"

    slow = asyncio.ensure_future(
        http.put(
            f"{sandbox.agent_url}/fs/write_file", params={"path": str(workdir / "slow")}, data=trickle(),
            headers={"Content-Type": "application/octet-stream"},
        )
    )  # fmt: skip

    async def read(name: str) -> None:
        reply = await fs.read(workdir / name)
        assert reply.status == 200 and sha256(reply.body) == sha256(blobs[name])

    async def write(name: str) -> None:
        assert (await fs.write(workdir / name, uploads[name])).status == 201

    await asyncio.gather(*(read(n) for n in blobs), *(write(n) for n in uploads))
    assert not slow.done()
    for name, data in uploads.items():
        assert sha256((workdir / name).read_bytes()) == sha256(data)
    release.set()
    async with await slow as response:
        assert response.status == 201
    assert (workdir / "slow").read_bytes() == b"slow start and the end"
