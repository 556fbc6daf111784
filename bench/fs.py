"""Filesystem: 1 GiB through HTTP on loopback vs `cp` on the same disk; directory zip vs `zip -r`.

The HTTP client is a raw socket client that is not the bottleneck (`sendfile(2)` of the file for a PUT,
`recv_into` a 4 MiB buffer and `write` into a file fallocated first for a GET; curl -T reached only 43 %
of cp on writes by itself), so the agent is what is measured. Runs are
interleaved (ours, then the peers, then ours again…) because the disk and page cache of a shared machine
are noisy; the agent's RSS is sampled during every transfer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
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


def _http(host: str, port: int, head: str, source: Path | None, dest: Path | None) -> int:
    """One HTTP/1.1 exchange on a fresh connection: send `head` (and `source`'s bytes by sendfile), read the
    answer's body into `dest` (or drop it); the status."""
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head.encode("latin-1"))
        if source is not None:
            with source.open("rb") as file:
                offset, size = 0, os.fstat(file.fileno()).st_size
                while offset < size:
                    offset += os.sendfile(sock.fileno(), file.fileno(), offset, size - offset)
        buffer = bytearray(4 * MiB)
        view = memoryview(buffer)
        got = b""
        while b"\r\n\r\n" not in got:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"connection closed before the answer's head: {got[:200]!r}")
            got += view[:n]
        raw_head, _, rest = got.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(":", 1) for line in lines[1:])
        length = int(next(v for k, v in fields.items() if k.lower() == "content-length").strip())
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if dest is not None else None
        try:
            if fd is not None and length > 0:
                # As the agent does for a PUT: a file's blocks allocated up front (ext4 skips delalloc work).
                os.posix_fallocate(fd, 0, length)
            if fd is not None and rest:
                os.write(fd, rest)
            remaining = length - len(rest)
            while remaining > 0:
                n = sock.recv_into(view, min(remaining, len(buffer)))
                if not n:
                    raise RuntimeError(f"the body stopped {remaining} bytes short")
                if fd is not None:
                    os.write(fd, view[:n])
                remaining -= n
        finally:
            if fd is not None:
                os.close(fd)
        return status


async def fast_put(url: str, target: str, source: Path, size: int = GiB) -> None:
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"PUT {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    status = await asyncio.to_thread(_http, host, int(port), head, source, None)
    if status // 100 != 2:
        raise RuntimeError(f"PUT {target}: {status}")


async def fast_get(url: str, target: str, dest: Path | None) -> None:
    host, port = url.removeprefix("http://").split(":")
    head = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    status = await asyncio.to_thread(_http, host, int(port), head, None, dest)
    if status != 200:
        raise RuntimeError(f"GET {target}: {status}")


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
        put = tracked("write", lambda: fast_put(url, f"/fs/write_file?path={q(root / 'put.bin')}", source))
        timings = await interleaved(
            RUNS,
            [
                (f"HTTP PUT /fs/write_file 1 GiB (sendfile client; {synced})", put),
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
            "throughput >= 90 % of cp",
        )
        throughput(ours, cp, GiB)
        throughput(ours, cp_sync, GiB)
        throughput(ours, dd, GiB)
        print(f"  agent RSS growth during the writes: {rss['write'] / MiB:.1f} MiB (target < 64 MiB)")

        # --- read: GET a 1 GiB file into a file on the same disk (a copy out), and into /dev/null ---
        read_path = f"/fs/read_file?path={q(source)}"
        get = tracked("read", lambda: fast_get(url, read_path, root / "got.bin"))
        get_null = tracked("read", lambda: fast_get(url, read_path, None))
        timings = await interleaved(
            RUNS,
            [
                ("HTTP GET /fs/read_file 1 GiB -> file (recv_into client)", get),
                ("cp 1 GiB (page cache, no fsync)", lambda: run_cmd("cp", str(source), str(root / "cp.bin"))),
                ("HTTP GET /fs/read_file 1 GiB -> /dev/null", get_null),
            ],
            fresh=[root / "got.bin", root / "cp.bin"],
        )
        ours, cp, null = timings
        report("read 1 GiB: HTTP GET vs cp on the same disk", ours, [cp, null], "throughput >= 90 % of cp")
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
