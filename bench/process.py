"""Processes: ours over HTTP/SSE/WebSocket vs the same work done in process (raw asyncio subprocess, PTY).

- exec of `true`: POST /process/exec vs asyncio.create_subprocess_exec + communicate() here (the overhead)
- PTY echo round trip: one byte through the attach WebSocket to `cat` in raw mode and back, vs writing and
  reading the PTY master of the same program started here
- output throughput: `head -c N /dev/zero` read through GET /process/{id}/stdout/stream (base64 in SSE,
  decoded here) vs reading the pipe directly
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import subprocess
import time

import aiohttp

from agent.sandbox import Sandbox

from . import common
from .common import Timing, measure, report

THROUGHPUT_BYTES = 256 * 1024 * 1024
PTY_THROUGHPUT_BYTES = 64 * 1024 * 1024


def sandbox() -> contextlib.AbstractContextManager[Sandbox]:
    """A private sandbox whose process buffer holds a whole throughput run, so no byte is dropped."""
    return common.sandbox(process_buffer_bytes=THROUGHPUT_BYTES + 16 * 1024 * 1024)


async def _raw_exec(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv} failed")


async def _post(http: aiohttp.ClientSession, url: str, body: object) -> dict[str, object]:
    async with http.post(url, json=body) as response:
        data: dict[str, object] = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {data}")
        return data


async def _get(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url + "/health") as response:
        await response.read()


async def _sse_bytes(http: aiohttp.ClientSession, url: str) -> int:
    """Read a process stream to its exit event; the number of output bytes it carried."""
    total = 0
    pending = bytearray()
    scanned = 0  # frames end with a blank line; never rescan what was searched already
    async with http.get(url) as response:
        while chunk := await response.content.readany():
            pending += chunk
            while (end := pending.find(b"\n\n", max(scanned - 1, 0))) >= 0:
                for line in bytes(pending[:end]).split(b"\n"):
                    if line.startswith(b"data: "):
                        event = json.loads(line[6:])
                        if "data_b64" in event:
                            total += len(base64.b64decode(event["data_b64"]))
                del pending[: end + 2]
                scanned = 0
            scanned = len(pending)
    return total


async def _raw_pipe_bytes(size: int) -> int:
    process = await asyncio.create_subprocess_exec(
        "head", "-c", str(size), "/dev/zero", stdout=asyncio.subprocess.PIPE, limit=1 << 20
    )
    assert process.stdout is not None
    total = 0
    while chunk := await process.stdout.read(1 << 20):
        total += len(chunk)
    await process.wait()
    return total


def _throughput_line(label: str, nbytes: int, seconds: float, ours: float | None = None) -> float:
    rate = nbytes / seconds / 1e6
    ratio = "1.0 (ours)" if ours is None else f"{rate / ours:.1f}x"
    print(f"{label:58} {rate:9.1f} {seconds * 1000:9.1f} {ratio:>8}")
    return rate


async def run(box: Sandbox) -> None:
    url = box.agent_url
    async with aiohttp.ClientSession() as http:
        # --- exec of true ---
        direct = {"command": "/bin/true", "args": ["x"]}
        ours = await measure(
            "HTTP POST /process/exec /bin/true", 300, lambda: _post(http, url + "/process/exec", direct)
        )
        shell = await measure(
            "HTTP POST /process/exec 'true' (through /bin/sh -c)",
            300,
            lambda: _post(http, url + "/process/exec", {"command": "true"}),
        )
        raw = await measure(
            "asyncio subprocess /bin/true in process", 300, lambda: _raw_exec("/bin/true", "x")
        )
        http_only = await measure(
            "HTTP GET /health (the HTTP round trip alone)", 300, lambda: _get(http, url)
        )
        report("exec of true", ours, [shell, raw, http_only], "overhead over the raw subprocess <= 3 ms p50")
        print(f"overhead p50: {ours.p50 - raw.p50:.2f} ms")

        # --- PTY echo round trip ---
        spawned = await _post(
            http,
            url + "/process/spawn",
            {"command": "stty raw -echo; echo ready; exec cat", "allocate_tty": True},
        )
        process_id = spawned["process_id"]
        async with http.ws_connect(f"{url}/process/{process_id}/attach") as ws:
            seen = b""
            while b"ready" not in seen:
                seen += (await ws.receive_bytes()) or b""

            async def ws_round_trip() -> None:
                await ws.send_bytes(b"x")
                got = b""
                while b"x" not in got:
                    got += await ws.receive_bytes()

            ours = await measure("WebSocket /process/{id}/attach, 1 byte to cat and back", 500, ws_round_trip)
        await _post(http, f"{url}/process/{process_id}/kill", {"signal": "KILL"})
        peer = await _pty_round_trips(500)
        report("PTY echo round trip", ours, [peer])

        # --- output throughput ---
        print("\n## output throughput (head -c N /dev/zero)")
        print(f"{'way':58} {'MB/s':>9} {'ms':>9} {'ratio':>8}")
        best_sse = 0.0
        for _ in range(3):
            start = time.perf_counter()
            spawned = await _post(
                http,
                url + "/process/spawn",
                {"command": "head", "args": ["-c", str(THROUGHPUT_BYTES), "/dev/zero"]},
            )
            got = await _sse_bytes(http, f"{url}/process/{spawned['process_id']}/stdout/stream")
            seconds = time.perf_counter() - start
            if got != THROUGHPUT_BYTES:
                raise RuntimeError(f"SSE delivered {got} of {THROUGHPUT_BYTES} bytes")
            best_sse = max(best_sse, THROUGHPUT_BYTES / seconds / 1e6)
        _throughput_line(
            f"SSE stream, {THROUGHPUT_BYTES >> 20} MiB (best of 3)",
            THROUGHPUT_BYTES,
            THROUGHPUT_BYTES / best_sse / 1e6,
        )
        start = time.perf_counter()
        got = await _raw_pipe_bytes(THROUGHPUT_BYTES)
        _throughput_line("asyncio pipe read in process", got, time.perf_counter() - start, best_sse)
        start = time.perf_counter()
        spawned = await _post(
            http,
            url + "/process/spawn",
            {"command": "head", "args": ["-c", str(PTY_THROUGHPUT_BYTES), "/dev/zero"], "allocate_tty": True},
        )
        got = await _sse_bytes(http, f"{url}/process/{spawned['process_id']}/stdout/stream")
        _throughput_line(
            f"SSE stream of a PTY, {PTY_THROUGHPUT_BYTES >> 20} MiB",
            got,
            time.perf_counter() - start,
            best_sse,
        )
        print("target: streamed output >= 100 MB/s")


async def _pty_round_trips(runs: int) -> Timing:
    """The same `cat` on a PTY started here, driven through its master fd (blocking I/O in a thread)."""

    def work() -> list[float]:
        master, slave = os.openpty()
        child = subprocess.Popen(
            ["setsid", "--ctty", "sh", "-c", "stty raw -echo; echo ready; exec cat"],
            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        )  # fmt: skip
        os.close(slave)
        try:
            seen = b""
            while b"ready" not in seen:
                seen += os.read(master, 4096)
            samples = []
            for _ in range(runs + 3):
                start = time.perf_counter()
                os.write(master, b"x")
                got = b""
                while b"x" not in got:
                    select.select([master], [], [])
                    got += os.read(master, 4096)
                samples.append((time.perf_counter() - start) * 1000)
            return samples[3:]
        finally:
            child.kill()
            child.wait()
            os.close(master)

    return Timing("PTY master in process (os.write/os.read), same cat", await asyncio.to_thread(work))


def main() -> Timing | None:
    with sandbox() as box:
        asyncio.run(run(box))
    return None
