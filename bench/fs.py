"""Filesystem: 1 GiB through HTTP on loopback vs `cp` on the same disk; directory zip vs `zip -r`.

The HTTP client is curl (C, streams to and from disk), so the agent is what is measured. Runs are
interleaved (ours, then the peers, then ours again…) because the disk and page cache of a shared machine
are noisy; the agent's RSS is sampled during every transfer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from agent.sandbox import Sandbox
from harness.rss import PeakRss

from .common import Timing, report, sandbox

MiB = 1024 * 1024
GiB = 1024 * MiB
RUNS = 7
ZIP_RUNS = 3


async def run_cmd(*argv: str, cwd: Path | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {err.decode()[:300]}")


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for _ in range(size // (16 * MiB)):
            out.write(os.urandom(16 * MiB))


def make_tree(root: Path) -> int:
    """A browser-profile-like tree: compressible logs/JSON, incompressible blobs, many small files."""
    rng = random.Random(7)
    total = 0
    for i in range(40):
        lines = (
            json.dumps({"ts": rng.randint(0, 10**9), "url": f"https://example.com/{rng.randint(0, 10**6)}",
                        "status": rng.choice([200, 301, 404]), "msg": "lorem ipsum " * rng.randint(1, 6)})
            for _ in range(20000)
        )  # fmt: skip
        data = "\n".join(lines).encode()[: 2 * MiB]
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "logs" / f"session-{i}.log").write_bytes(data)
        total += len(data)
    for i in range(40):
        (root / "cache" / f"{i % 4}").mkdir(parents=True, exist_ok=True)
        (root / "cache" / f"{i % 4}" / f"entry-{i}").write_bytes(os.urandom(2 * MiB))
        total += 2 * MiB
    for i in range(2000):
        directory = root / "small" / f"d{i % 50}"
        directory.mkdir(parents=True, exist_ok=True)
        data = (f"item {i} " * rng.randint(100, 1000)).encode()
        (directory / f"f{i}.txt").write_bytes(data)
        total += len(data)
    return total


async def interleaved(
    runs: int, actions: list[tuple[str, Callable[[], Awaitable[object]]]], fresh: Sequence[Path] = ()
) -> list[Timing]:
    """Each action once per round, rounds repeated; the `fresh` paths are removed before every action
    (untimed), so every write creates a new file instead of paying for freeing the old one."""
    timings = [Timing(name, []) for name, _ in actions]
    for _ in range(runs):
        for timing, (_, action) in zip(timings, actions, strict=True):
            for path in fresh:
                path.unlink(missing_ok=True)
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            await action()
            timing.samples_ms.append((time.perf_counter() - start) * 1000)
    return timings


def throughput(ours: Timing, peer: Timing, size: int) -> None:
    mine, theirs = size / MiB / (ours.p50 / 1000), size / MiB / (peer.p50 / 1000)
    print(
        f"  {ours.name}: {mine:.0f} MiB/s = {100 * mine / theirs:.0f} % of {peer.name} ({theirs:.0f} MiB/s)"
    )


async def run(box: Sandbox) -> None:
    root = box.state_dir / "fs" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    url = box.agent_url
    pid = int(box.supervisorctl("pid", "agent").strip())
    source = root / "source-1g.bin"
    await asyncio.to_thread(write_random, source, GiB)
    rss: dict[str, int] = {}

    def tracked(name: str, action: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def measured() -> None:
            with PeakRss(pid) as peak:
                await action()
            rss[name] = max(rss.get(name, 0), peak.growth)

        return measured

    def q(path: Path) -> str:
        return quote(str(path))

    try:
        # --- write: PUT a 1 GiB file (the agent streams it to a temp file, [fsyncs,] renames) ---
        synced = "fsync" if box.config.fs_fsync else "no fsync"
        put = tracked("write", lambda: run_cmd(
            "curl", "-sSfo", "/dev/null", "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
            "-T", str(source), f"{url}/fs/write_file?path={q(root / 'put.bin')}",
        ))  # fmt: skip
        timings = await interleaved(
            RUNS,
            [
                (f"HTTP PUT /fs/write_file 1 GiB (curl -T; {synced})", put),
                ("cp 1 GiB (page cache, no fsync)", lambda: run_cmd("cp", str(source), str(root / "cp.bin"))),
                ("cp 1 GiB + sync of the copy", lambda: run_cmd(
                    "sh", "-c", f"cp '{source}' '{root / 'cps.bin'}' && sync '{root / 'cps.bin'}'")),
                ("dd bs=4M conv=fsync (a user-space copy, fsync)", lambda: run_cmd(
                    "dd", f"if={source}", f"of={root / 'dd.bin'}", "bs=4M", "conv=fsync", "status=none")),
            ],
            fresh=[root / "put.bin", root / "cp.bin", root / "cps.bin", root / "dd.bin"],
        )  # fmt: skip
        ours, cp, cp_sync, dd = timings
        report(
            "write 1 GiB: HTTP PUT vs cp on the same disk",
            ours,
            [cp, cp_sync, dd],
            "throughput >= 50 % of cp",
        )
        throughput(ours, cp, GiB)
        throughput(ours, cp_sync, GiB)
        throughput(ours, dd, GiB)
        print(f"  agent RSS growth during the writes: {rss['write'] / MiB:.1f} MiB (target < 64 MiB)")

        # --- read: GET a 1 GiB file into a file on the same disk (a copy out), and into /dev/null ---
        get = tracked("read", lambda: run_cmd(
            "curl", "-sSf", "-o", str(root / "got.bin"), f"{url}/fs/read_file?path={q(source)}"))  # fmt: skip
        get_null = tracked("read", lambda: run_cmd(
            "curl", "-sSf", "-o", "/dev/null", f"{url}/fs/read_file?path={q(source)}"))  # fmt: skip
        timings = await interleaved(
            RUNS,
            [
                ("HTTP GET /fs/read_file 1 GiB -> file (curl -o)", get),
                ("cp 1 GiB (page cache, no fsync)", lambda: run_cmd("cp", str(source), str(root / "cp.bin"))),
                ("HTTP GET /fs/read_file 1 GiB -> /dev/null", get_null),
            ],
            fresh=[root / "got.bin", root / "cp.bin"],
        )
        ours, cp, null = timings
        report("read 1 GiB: HTTP GET vs cp on the same disk", ours, [cp, null], "throughput >= 50 % of cp")
        throughput(null, cp, GiB)
        throughput(ours, cp, GiB)
        print(f"  agent RSS growth during the reads: {rss['read'] / MiB:.1f} MiB (target < 64 MiB)")
        for name in ("put.bin", "cp.bin", "cps.bin", "dd.bin", "got.bin"):
            (root / name).unlink(missing_ok=True)
        source.unlink()

        # --- a directory as a zip: streamed download vs zip -r vs python -m zipfile -c ---
        tree = root / "profile"
        size = await asyncio.to_thread(make_tree, tree)
        ours_zip, zip_r, py_zip = root / "ours.zip", root / "zip-r.zip", root / "py.zip"
        zip_get = tracked("zip", lambda: run_cmd(
            "curl", "-sSf", "-o", str(ours_zip), f"{url}/fs/download_dir_zip?path={q(tree)}"))  # fmt: skip

        async def zip_cli() -> None:
            zip_r.unlink(missing_ok=True)
            await run_cmd("zip", "-qr", str(zip_r), ".", cwd=tree)

        timings = await interleaved(
            ZIP_RUNS,
            [
                (f"HTTP GET /fs/download_dir_zip ({size // MiB} MiB, 2120 files)", zip_get),
                ("zip -qr (Info-ZIP, level 6)", zip_cli),
                ("python -m zipfile -c", lambda: run_cmd(
                    sys.executable, "-m", "zipfile", "-c", str(py_zip), str(tree))),
            ],
        )  # fmt: skip
        ours, zip_t, py_t = timings
        report(f"zip a {size // MiB} MiB directory", ours, [zip_t, py_t], "as fast as zip -r")
        for label, path in (("ours", ours_zip), ("zip -r", zip_r), ("python zipfile", py_zip)):
            print(f"  {label:16} {path.stat().st_size / MiB:7.1f} MiB")
        print(f"  agent RSS growth while zipping: {rss['zip'] / MiB:.1f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> Timing | None:
    with sandbox() as box:
        asyncio.run(run(box))
    return None
