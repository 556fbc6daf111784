"""`make soak` (issue 13, item 6): mixed load on every route family from several clients for SOAK_MINUTES,
sampling the agent every SOAK_SAMPLE_S; exits non-zero when a target is missed. Not part of `make test`.

    SOAK_MINUTES=10 SOAK_CLIENTS=4 SOAK_SAMPLE_S=30 python -m bench.soak

Each client loops over every operation (computer click/type/move, screenshot, clipboard, fs write/read/list,
fs watch + its stream, process exec and spawn + kill, /curl, /playwright/execute, telemetry and log streams
opened and closed, /health) in its own shuffled order. Every SOAK_SAMPLE_S the agent's RSS, open fds (less
the clients' own connections to the API), threads, live children and zombie children, and Chromium's target
count (/json/list) are sampled and a row is printed. The targets are judged on quiet samples (load paused,
in-flight work drained): after a warm-up under full load (pools and workers grown to their working size),
half-way and at the end:
- fds and threads flat: at most FD_SLACK / THREAD_SLACK more at the end than at a third quiet sample taken
  half-way (pools grow to their working size early; a leak keeps growing),
- RSS growth < 20 MiB, 0 zombies (at the end and in no two samples running), no Chromium target leaked,
- no 5xx and no failed connection during the load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import random
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from agent.sandbox import Sandbox
from harness.sandboxes import free_port, private_sandbox

MIB = 1024 * 1024
RSS_GROWTH_MAX = 20 * MIB
FD_SLACK = 2
THREAD_SLACK = 2
TARGET_SLACK = 0
WARMUP_S = float(os.environ.get("SOAK_WARMUP_S", "60"))
# The agent's bounded buffers, made small so that they are full (at their steady size) by the end of the
# warm-up: what still grows after it is a leak, not a buffer filling up (the defaults, 8192 telemetry
# events and 300 s of exited processes, take longer than a short soak to fill).
SOAK_CONFIG: dict[str, Any] = {"telemetry_buffer_events": 1024, "process_retention_s": 20.0}
QUIET_S = 5.0  # after the load pauses: exited processes reaped, streams' handlers gone


@dataclasses.dataclass
class Sample:
    at_s: float
    rss: int
    fds: int
    threads: int
    children: int
    zombies: list[int]
    targets: int
    fd_targets: list[str]

    def row(self, label: str) -> str:
        return (
            f"| {label:>9} | {self.at_s:7.0f} | {self.rss / MIB:8.1f} | {self.fds:4d} | {self.threads:7d} | "
            f"{self.children:8d} | {len(self.zombies):7d} | {self.targets:7d} |"
        )


HEADER = (
    "|    sample |  time s |  RSS MiB |  fds | threads | children | zombies | targets |\n"
    "|----------:|--------:|---------:|-----:|--------:|---------:|--------:|--------:|"
)


class Stats:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failures: list[str] = []

    def note(self, name: str, status: int, detail: str = "") -> None:
        self.calls[name] += 1
        self.statuses[(name, status)] += 1
        if status >= 500 or status == 0:
            self.failures.append(f"{name}: {status} {detail[:200]}")


def sample(box: Sandbox, agent: psutil.Process, started: float) -> Sample:
    with agent.oneshot():
        rss, fds, threads = agent.memory_info().rss, agent.num_fds(), agent.num_threads()
    children = agent.children(recursive=True)
    zombies = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
    with urllib.request.urlopen(box.cdp_url + "/json/list", timeout=10) as response:
        targets = len(json.load(response))
    fd_targets = [opened.path for opened in agent.open_files()]
    api_port = box.config.port
    connections = agent.net_connections(kind="all")
    # The clients' own kept-alive connections to the API (the soak's connection pool, closed by the
    # agent's idle timeout) are not the agent's fds to judge: counted apart.
    theirs = [c for c in connections if c.laddr and c.laddr[1] == api_port and c.raddr]
    fd_targets += [f"{c.type.name} {c.laddr} {c.raddr} {c.status}" for c in connections if c not in theirs]
    fds -= len(theirs)
    return Sample(time.monotonic() - started, rss, fds, threads, len(children), zombies, targets, fd_targets)


class Client:
    """One client's loop over every operation; `paused` set = stop after the current operation."""

    def __init__(self, index: int, box: Sandbox, http: aiohttp.ClientSession, stats: Stats, curl_url: str):
        self.index = index
        self.box = box
        self.http = http
        self.stats = stats
        self.curl_url = curl_url
        (box.state_dir / "fs" / f"soak-{index}").mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(index)

    async def call(self, name: str, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        try:
            async with self.http.request(method, path, **kwargs) as response:
                body = await response.read()
                self.stats.note(name, response.status, body.decode("utf-8", "replace"))
                return response.status, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.note(name, 0, repr(exc))
            return 0, b""

    async def stream(self, name: str, path: str, **kwargs: Any) -> None:
        """Open an SSE stream, read what comes for a moment, close it."""
        try:
            async with self.http.get(path, **kwargs) as response:
                self.stats.note(name, response.status)
                if response.status == 200:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await response.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.note(name, 0, repr(exc))

    def operations(self) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        i, fs_path = self.index, self.box.state_dir / "fs" / f"soak-{self.index}"
        file = f"{fs_path}/f.bin"

        async def click() -> None:
            await self.call("click", "POST", "/computer/click_mouse", json={"x": 300 + i, "y": 400})

        async def type_text() -> None:
            await self.call("type", "POST", "/computer/type", json={"text": "soak"})

        async def move() -> None:
            x, y = self.rng.randrange(100, 1800), self.rng.randrange(200, 1000)
            await self.call("move", "POST", "/computer/move_mouse", json={"x": x, "y": y})

        async def screenshot() -> None:
            await self.call("screenshot", "POST", "/computer/screenshot", json={})

        async def clipboard() -> None:
            await self.call("clipboard", "POST", "/computer/clipboard/write", json={"text": f"soak {i}"})
            await self.call("clipboard", "POST", "/computer/clipboard/read", json={})

        async def fs() -> None:
            data = os.urandom(64 * 1024)
            await self.call("fs", "PUT", "/fs/write_file", params={"path": file}, data=data)
            await self.call("fs", "GET", "/fs/read_file", params={"path": file})
            await self.call("fs", "GET", "/fs/list_files", params={"path": str(fs_path)})

        async def watch() -> None:
            status, body = await self.call("watch", "POST", "/fs/watch", json={"path": str(fs_path)})
            if status == 201:
                watch_id = json.loads(body)["watch_id"]
                await self.stream("watch", f"/fs/watch/{watch_id}/events")
                await self.call("watch", "DELETE", f"/fs/watch/{watch_id}")

        async def exec_() -> None:
            await self.call("exec", "POST", "/process/exec", json={"command": "echo", "args": ["soak"]})

        async def spawn() -> None:
            status, body = await self.call(
                "spawn", "POST", "/process/spawn", json={"command": "sleep", "args": ["30"]}
            )
            if status == 200:
                process_id = json.loads(body)["process_id"]
                await self.stream("spawn", f"/process/{process_id}/stdout/stream")
                await self.call("spawn", "POST", f"/process/{process_id}/kill", json={"signal": "TERM"})

        async def curl() -> None:
            await self.call("curl", "POST", "/curl", json={"url": self.curl_url, "timeout_ms": 20000})

        async def playwright() -> None:
            body = {"code": "return await page.evaluate(() => 1 + 1)", "timeout_sec": 30}
            await self.call("playwright", "POST", "/playwright/execute", json=body)

        async def telemetry() -> None:
            await self.stream("telemetry", "/telemetry/stream")

        async def logs() -> None:
            params = {"source": "supervisor", "supervisor_process": "agent", "follow": "true"}
            await self.stream("logs", "/logs/stream", params=params)

        async def health() -> None:
            await self.call("health", "GET", "/health")

        return [
            ("click", click),
            ("type", type_text),
            ("move", move),
            ("screenshot", screenshot),
            ("clipboard", clipboard),
            ("fs", fs),
            ("watch", watch),
            ("exec", exec_),
            ("spawn", spawn),
            ("curl", curl),
            ("playwright", playwright),
            ("telemetry", telemetry),
            ("logs", logs),
            ("health", health),
        ]

    async def run(self, running: asyncio.Event) -> None:
        operations = self.operations()
        while True:
            await running.wait()
            self.rng.shuffle(operations)
            for _, operation in operations:
                if not running.is_set():
                    break
                await operation()


async def curl_target() -> tuple[web.AppRunner, str]:
    """The page /curl fetches: a small local HTTP server in this process."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="soak " * 200)

    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hello"


async def soak(box: Sandbox, minutes: float, clients: int, every_s: float) -> int:
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    stats = Stats()
    runner, curl_url = await curl_target()
    running = asyncio.Event()
    started = time.monotonic()
    samples: list[Sample] = []
    try:
        async with aiohttp.ClientSession(
            base_url=box.agent_url, timeout=aiohttp.ClientTimeout(total=120)
        ) as http:
            workers = [Client(i, box, http, stats, curl_url) for i in range(clients)]
            tasks = [asyncio.create_task(w.run(running), name=f"soak-client-{w.index}") for w in workers]

            async def quiet(label: str) -> Sample:
                running.clear()
                # Each client ends its current operation (at most a few seconds), then it is all drained.
                await asyncio.sleep(QUIET_S)
                taken = await asyncio.to_thread(sample, box, agent, started)
                print(taken.row(label), flush=True)
                return taken

            print(HEADER, flush=True)
            running.set()
            await asyncio.sleep(WARMUP_S)
            baseline = await quiet("baseline")
            mid: Sample | None = None
            for half in (1, 2):
                running.set()
                deadline = time.monotonic() + minutes * 30
                while (left := deadline - time.monotonic()) > 0:
                    await asyncio.sleep(min(every_s, left))
                    taken = await asyncio.to_thread(sample, box, agent, started)
                    samples.append(taken)
                    print(taken.row("load"), flush=True)
                if half == 1:
                    mid = await quiet("mid")
            end = await quiet("end")
            assert mid is not None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await runner.cleanup()
    return judge(baseline, mid, end, samples, stats, minutes)


def judge(
    baseline: Sample, mid: Sample, end: Sample, samples: list[Sample], stats: Stats, minutes: float
) -> int:
    total = sum(stats.calls.values())
    print(f"\n{total} calls in {minutes:g} min from the load phase and warm-up:")
    by_status = collections.defaultdict(list)
    for (name, status), count in sorted(stats.statuses.items()):
        by_status[name].append(f"{status}×{count}")
    for name in sorted(by_status):
        print(f"  {name:>10}: {', '.join(by_status[name])}")
    if samples:
        first, last = samples[0], samples[-1]
        print(
            f"under load, first→last sample: RSS {first.rss / MIB:.1f}→{last.rss / MIB:.1f} MiB, "
            f"fds {first.fds}→{last.fds}, threads {first.threads}→{last.threads}, "
            f"targets {first.targets}→{last.targets}"
        )
    rss_growth = end.rss - baseline.rss
    print(
        f"quiet, baseline→end: RSS {rss_growth / MIB:+.1f} MiB, fds {end.fds - baseline.fds:+d}, "
        f"threads {end.threads - baseline.threads:+d}, children {end.children - baseline.children:+d}, "
        f"zombies {len(end.zombies)}, Chromium targets {end.targets - baseline.targets:+d}"
    )
    missed = []
    if rss_growth >= RSS_GROWTH_MAX:
        missed.append(f"RSS grew {rss_growth / MIB:.1f} MiB (target < {RSS_GROWTH_MAX // MIB} MiB)")
    print(
        f"quiet, mid→end: RSS {(end.rss - mid.rss) / MIB:+.1f} MiB, fds {end.fds - mid.fds:+d}, "
        f"threads {end.threads - mid.threads:+d}"
    )
    # Flat = no growth over the second half: the thread pools (and the X connection each pool thread
    # opens) grow to their working size under load, some of them only at a rare peak of concurrency.
    if end.fds - mid.fds > FD_SLACK:
        new = collections.Counter(end.fd_targets) - collections.Counter(mid.fd_targets)
        missed.append(
            f"fds grew by {end.fds - mid.fds} in the second half (flat: ≤ {FD_SLACK}); new: {dict(new)}"
        )
    if end.threads - mid.threads > THREAD_SLACK:
        missed.append(
            f"threads grew by {end.threads - mid.threads} in the second half (flat: ≤ {THREAD_SLACK})"
        )
    if end.targets - baseline.targets > TARGET_SLACK:
        missed.append(f"Chromium targets grew by {end.targets - baseline.targets}")
    if end.zombies:
        missed.append(f"zombies at the end: {end.zombies}")
    lasting = {pid for a, b in itertools.pairwise(samples) for pid in set(a.zombies) & set(b.zombies)}
    if lasting:
        missed.append(f"zombies that lasted a whole sample interval: {sorted(lasting)}")
    if stats.failures:
        missed.append(f"{len(stats.failures)} 5xx or failed calls, e.g. {stats.failures[:5]}")
    for line in missed:
        print("MISSED:", line)
    print("soak:", "targets met" if not missed else "targets missed")
    return 1 if missed else 0


def main() -> int:
    minutes = float(os.environ.get("SOAK_MINUTES", "10"))
    clients = int(os.environ.get("SOAK_CLIENTS", "4"))
    every_s = float(os.environ.get("SOAK_SAMPLE_S", "30"))
    print(
        f"# soak: {clients} clients, {minutes:g} min, a sample every {every_s:g} s "
        f"(after {WARMUP_S:g} s of warm-up)"
    )
    with private_sandbox(f"agent-soak-{uuid.uuid4().hex[:6]}-", **SOAK_CONFIG) as box:
        return asyncio.run(soak(box, minutes, clients, every_s))


if __name__ == "__main__":
    sys.exit(main())
