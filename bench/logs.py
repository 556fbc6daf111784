"""Logs: GET /logs/stream vs coreutils `tail` read through a pipe, on a file in the sandbox's fs root.

- latency: a line appended to a followed file → its event on the stream, vs → its line on `tail -F -n 0`'s
  stdout (tail also waits on inotify)
- throughput: a 200,000-line file sent once (`follow=false`, one SSE event per line, JSON-parsed here) vs
  `tail -n +1 FILE` read through a pipe
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from agent.sandbox import Sandbox

from . import common
from .common import Timing, report

LATENCY_RUNS = 100
LINES = 200_000
LINE = b"2026-11-28 12:00:00,000 INFO some.module: a typical log line of about eighty bytes\n"


async def _events(response: aiohttp.ClientResponse) -> int:
    """Read an SSE body to its end; the number of LogEvents in it."""
    count = 0
    async for raw in response.content:
        if raw.startswith(b"data: "):
            json.loads(raw[6:])
            count += 1
    return count


async def _tail_lines(path: Path) -> int:
    tail = await asyncio.create_subprocess_exec("tail", "-n", "+1", str(path), stdout=asyncio.subprocess.PIPE)
    assert tail.stdout is not None
    count = 0
    async for _ in tail.stdout:
        count += 1
    await tail.wait()
    return count


async def _latency_ours(http: aiohttp.ClientSession, url: str, path: Path) -> Timing:
    samples = []
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        with path.open("ab", buffering=0) as out:
            for i in range(LATENCY_RUNS + 3):
                start = time.perf_counter()
                out.write(b"latency %d\n" % i)
                while not (await response.content.readline()).startswith(b"data: "):
                    pass
                if i >= 3:
                    samples.append((time.perf_counter() - start) * 1000)
    return Timing("append → LogEvent on GET /logs/stream", samples)


async def _latency_tail(path: Path) -> Timing:
    samples = []
    tail = await asyncio.create_subprocess_exec(
        "tail", "-F", "-n", "0", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert tail.stdout is not None
    try:
        await asyncio.sleep(0.3)  # tail sets up its inotify watch after it starts
        with path.open("ab", buffering=0) as out:
            for i in range(LATENCY_RUNS + 3):
                start = time.perf_counter()
                out.write(b"latency %d\n" % i)
                await tail.stdout.readline()
                if i >= 3:
                    samples.append((time.perf_counter() - start) * 1000)
    finally:
        tail.kill()
        await tail.wait()
    return Timing("append → line on `tail -F -n 0` stdout", samples)


async def _throughput(name: str, runs: int, read: Callable[[], Awaitable[int]]) -> Timing:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        count = await read()
        samples.append((time.perf_counter() - start) * 1000)
        if count != LINES:
            raise RuntimeError(f"{name}: {count} lines, expected {LINES}")
    return Timing(name, samples)


async def run(box: Sandbox) -> None:
    directory = box.state_dir / "fs" / "bench-logs"
    directory.mkdir(parents=True, exist_ok=True)
    follow = directory / "follow.log"
    follow.write_bytes(b"")
    big = directory / "big.log"
    big.write_bytes(LINE * LINES)
    async with aiohttp.ClientSession() as http:
        base = f"{box.agent_url}/logs/stream?source=path&path="
        ours = await _latency_ours(http, f"{base}{follow}", follow)
        peer = await _latency_tail(follow)
        report("log line latency (append → reader)", ours, [peer])

        async def read_ours() -> int:
            async with http.get(f"{base}{big}&follow=false") as response:
                return await _events(response)

        ours = await _throughput(f"{LINES} lines, GET /logs/stream follow=false", 3, read_ours)
        peer = await _throughput(f"{LINES} lines, `tail -n +1` through a pipe", 3, lambda: _tail_lines(big))
        report("log throughput (whole file once)", ours, [peer])
        for timing in (ours, peer):
            print(f"{timing.name}: {LINES / (timing.p50 / 1000):,.0f} lines/s")


def main() -> None:
    with common.sandbox() as box:
        asyncio.run(run(box))
