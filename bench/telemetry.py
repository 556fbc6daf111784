"""Telemetry: events/s through one SSE client (vs paging /telemetry/events), the load time of a page with 200
subresources and console output with telemetry all on vs off, the agent's CPU while a page logs 1,000
lines/s (telemetry on vs off), and where a console.log flood's limit is (Chromium or the agent).

python -m bench telemetry                          # every section
TELEMETRY_BENCH=load,cpu python -m bench telemetry # some: sse, load, cpu, flood
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import psutil
import websockets
from aiohttp import web

from agent.sandbox import Sandbox
from harness.cdp import CDPError, PageSession

from .common import Timing, measure, report, sandbox

FILL = 20_000
SUBRESOURCES = 200
LOAD_ROUNDS = 8  # rounds of (off, on) loads, interleaved so drift on a shared machine hits both alike
LOADS_PER_ROUND = 3
FLOOD_LINES = 100_000


def _page(kind: str = "png") -> str:
    images = "".join(f'<img src="/r/{i}.{kind}" width="4" height="4">' for i in range(SUBRESOURCES))
    script = "for (let i = 0; i < 50; i++) console.log('line ' + i); window.__ready = true;"
    return f"<!doctype html><html><body>{images}<script>{script}</script></body></html>"


def _png() -> bytes:
    """A 4x4 black PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\0\0\0" * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
TICKER = """<!doctype html><html><body><script>
let n = 0; setInterval(() => { for (let i = 0; i < 10; i++) console.log('tick ' + (n++)); }, 10);
window.__ready = true;</script></body></html>"""
BLANK = "<!doctype html><html><body><script>window.__ready = true;</script></body></html>"


async def _serve() -> tuple[web.AppRunner, str]:
    page, svg_page, png = _page(), _page("svg"), _png()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def svg_index(request: web.Request) -> web.Response:
        return web.Response(text=svg_page, content_type="text/html")

    async def ticker(request: web.Request) -> web.Response:
        return web.Response(text=TICKER, content_type="text/html")

    async def blank(request: web.Request) -> web.Response:
        return web.Response(text=BLANK, content_type="text/html")

    async def resource(request: web.Request) -> web.Response:
        SERVED[0] += 1
        if request.match_info["name"].endswith(".svg"):
            return web.Response(text=SVG, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})
        return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})

    async def favicon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/page", index)
    app.router.add_get("/svg-page", svg_index)
    app.router.add_get("/ticker", ticker)
    app.router.add_get("/blank", blank)
    app.router.add_get("/r/{name}", resource)
    app.router.add_get("/favicon.ico", favicon)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _configure(http: aiohttp.ClientSession, box: Sandbox, browser: Mapping[str, object]) -> None:
    async with http.put(box.agent_url + "/telemetry", json={"browser": browser}) as response:
        assert response.status == 200, await response.text()
    # The monitor attaches and enables its domains asynchronously; let it finish before measuring.
    await asyncio.sleep(0.3)


ALL: dict[str, object] = {
    name: {} for name in ("console", "network", "page", "interaction", "control", "connection", "system")
}


async def _read_sse(http: aiohttp.ClientSession, url: str, count: int) -> int:
    got = 0
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                got += 1
                if got == count:
                    return got
    return got


async def _evaluate(page: PageSession, expression: str, timeout: float = 10.0) -> object:
    return await asyncio.wait_for(page.evaluate(expression), timeout)


async def _load(page: PageSession, url: str) -> tuple[float, float]:
    """Navigate and wait for the load event and the page's own script; (wall ms, the page's load ms)."""
    await _evaluate(page, "window.__ready = false")
    start = time.perf_counter()
    await page.call("Page.navigate", url=url)
    deadline = start + 30
    while time.perf_counter() < deadline:
        try:
            done = await _evaluate(page, "document.readyState === 'complete' && window.__ready === true")
        except TimeoutError:
            await _diagnose(url)
            raise
        if done:
            wall = (time.perf_counter() - start) * 1000
            own = await _evaluate(page, "performance.getEntriesByType('navigation')[0].loadEventEnd")
            return wall, float(own)  # type: ignore[arg-type]
        await asyncio.sleep(0.005)
    state = await _evaluate(
        page, "[document.readyState, [...document.images].filter(i => i.complete).length, location.href]"
    )
    raise CDPError(f"{url} did not load in 30 s: {state}")


SERVED = [0]
BOX: list[Sandbox] = []


async def _diagnose(url: str) -> None:
    box = BOX[0]
    print(f"DIAG: {url} hung; served {SERVED[0]} requests", flush=True)
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "type=renderer" in cmd or "-m agent" in cmd:
            print("DIAG", proc.pid, f"{proc.cpu_percent(0.3):.0f} % CPU", proc.status(), cmd[:60], flush=True)
    direct = f"http://127.0.0.1:{box.config.chromium_cdp_port}"
    try:
        other = await asyncio.wait_for(PageSession.open(direct), 5)
        print("DIAG direct:", await _evaluate(other, "[document.readyState, location.href]", 5), flush=True)
        await other.close()
    except Exception as exc:
        print("DIAG direct failed:", repr(exc), flush=True)
    try:
        async with aiohttp.ClientSession() as http, http.get(box.agent_url + "/health") as response:
            print("DIAG health:", (await response.json()).get("telemetry"), flush=True)
    except Exception as exc:
        print("DIAG health failed:", repr(exc), flush=True)


async def _sse(box: Sandbox, http: aiohttp.ClientSession, page: PageSession, base: str) -> None:
    """Fill the buffer with real console events, then read them all back."""
    await _configure(http, box, {"console": {}})
    for _ in range(FILL // 5000):
        await page.evaluate("for (let i = 0; i < 5000; i++) console.log('fill ' + i)")
    await asyncio.sleep(1.0)
    await _configure(http, box, {})  # nothing new while reading
    async with http.get(box.agent_url + "/health") as response:
        held = (await response.json())["telemetry"]["held_events"]

    async def sse() -> None:
        assert await _read_sse(http, box.agent_url + "/telemetry/stream?replay=all", held) == held

    async def paged() -> None:
        offset = None
        while True:
            params = {"limit": "1000", "since": "1h", **({"offset": str(offset)} if offset else {})}
            async with http.get(box.agent_url + "/telemetry/events", params=params) as response:
                await response.json()
                if response.headers["X-Has-More"] != "true":
                    break
                offset = int(response.headers["X-Next-Offset"])

    ours = await measure(f"SSE replay of {held} events, one client", 5, sse, warmup=1)
    peer = await measure(f"GET /telemetry/events pages of 1000 ({held} events)", 5, paged, warmup=1)
    report("telemetry: reading every held event", ours, [peer])
    print(f"SSE events/s: {held / (ours.p50 / 1000):,.0f} (target >= 20,000/s)")


class _Floor:
    """Chromium's own instrumentation floor: a bare client on the browser's websocket that does what the
    monitor asks of Chromium with every category on (auto-attach with waitForDebuggerOnStart, flattened; on
    each page/iframe/worker session Runtime, Network, Page, Inspector, PerformanceTimeline and auto-attach,
    then resume) and reads every event without looking at it. No interaction script or binding: those are
    the monitor's own work, not instrumentation."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self._ws = ws
        self._ids = 0
        self.events = 0
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="bench-floor-reader")
        self._setups: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, cdp_http: str) -> _Floor:
        async with aiohttp.ClientSession() as http, http.get(cdp_http + "/json/version") as response:
            url = (await response.json())["webSocketDebuggerUrl"]
        floor = cls(await websockets.connect(url, max_size=64 * 1024 * 1024))
        await floor._send("Target.setAutoAttach", AUTO_ATTACH)
        return floor

    async def serve(self) -> None:
        """Until stdin closes (the bench's end of the pipe): then switch auto-attach off and go."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        await self.close()

    async def _send(self, method: str, params: Mapping[str, object], session: str | None = None) -> None:
        # Fire and forget: replies are read (and ignored) like events, as a client that never waits would.
        self._ids += 1
        message: dict[str, object] = {"id": self._ids, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send(json.dumps(message))

    async def _read(self) -> None:
        async for raw in self._ws:
            self.events += 1
            if b'"Target.attachedToTarget"' not in (raw if isinstance(raw, bytes) else raw.encode()):
                continue
            params = json.loads(raw)["params"]
            task = asyncio.get_running_loop().create_task(self._setup(params), name="bench-floor-setup")
            self._setups.add(task)
            task.add_done_callback(self._setups.discard)

    async def _setup(self, params: Mapping[str, Any]) -> None:
        session, kind = params["sessionId"], params["targetInfo"]["type"]
        page_like = kind in ("page", "iframe")
        calls: list[tuple[str, Mapping[str, object]]] = [
            ("Runtime.enable", {}),
            ("Network.enable", {"maxPostDataSize": 64 * 1024}),
        ]
        if page_like:
            calls += [
                ("Page.enable", {}),
                ("Inspector.enable", {}),
                ("PerformanceTimeline.enable", {"eventTypes": ["layout-shift", "largest-contentful-paint"]}),
                ("Target.setAutoAttach", AUTO_ATTACH),
            ]
        # Chromium runs a session's commands in order, so the resume comes after every enable.
        for method, call_params in calls:
            await self._send(method, call_params, session)
        await self._send("Runtime.runIfWaitingForDebugger", {}, session)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._send("Target.setAutoAttach", {**AUTO_ATTACH, "autoAttach": False})
            await asyncio.sleep(0.2)  # let the switch-off reach Chromium before the sessions go
        await self._ws.close()
        for task in (self._reader, *self._setups):
            task.cancel()
        await asyncio.gather(self._reader, *self._setups, return_exceptions=True)


AUTO_ATTACH: dict[str, object] = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}


class _FloorProcess:
    """The floor client in a process of its own, like the agent's monitor: its websocket reading must not
    compete with the bench's image server and polling in this process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, cdp_http: str) -> _FloorProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.telemetry",
            "--floor",
            cdp_http,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            proc.kill()
            await proc.wait()
            raise CDPError(f"the floor client did not start: {line!r}")
        return cls(proc)

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def _floor_main(cdp_http: str) -> None:
    floor = await _Floor.open(cdp_http)
    print("ready", flush=True)
    await floor.serve()


async def _load_section(box: Sandbox, http: aiohttp.ClientSession, page: PageSession, base: str) -> None:
    """Three arms, interleaved: telemetry off; off plus a bare CDP client that enables what the monitor
    enables and only reads (Chromium's floor); all on (the agent's monitor)."""
    arms = ("off", "floor", "all on")
    walls: dict[str, list[float]] = {arm: [] for arm in arms}
    owns: dict[str, list[float]] = {arm: [] for arm in arms}
    direct = f"http://127.0.0.1:{box.config.chromium_cdp_port}"  # the monitor's way in, not the proxy
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    agent_cpu: dict[str, list[float]] = {arm: [] for arm in arms}  # agent CPU ms per measured page load
    for round_ in range(LOAD_ROUNDS + 1):  # round 0 warms up every arm
        for arm in arms:
            await _configure(http, box, ALL if arm == "all on" else {})
            floor = await _FloorProcess.start(direct) if arm == "floor" else None
            try:
                if floor is not None:
                    await asyncio.sleep(0.3)  # attached and enabled, as _configure waits for the monitor
                for _ in range(LOADS_PER_ROUND):
                    await _load(page, base + "/blank")  # each measured load starts from the same place
                    before = agent.cpu_times()
                    wall, own = await _load(page, base + "/page")
                    after = agent.cpu_times()
                    if round_:
                        walls[arm].append(wall)
                        owns[arm].append(own)
                        used = after.user + after.system - before.user - before.system
                        agent_cpu[arm].append(used * 1000)
            finally:
                if floor is not None:
                    await floor.stop()
    title = f"telemetry: load of a page with {SUBRESOURCES} subresources + 50 console lines"
    off = Timing("load, telemetry off", walls["off"])
    bare = Timing("load, off + bare CDP client (floor)", walls["floor"])
    on = Timing("load, telemetry all on", walls["all on"])
    report(title + " (Page.navigate to load, wall)", off, [bare, on], target="all on <= 10 % slower than off")
    medians = {arm: statistics.median(owns[arm]) for arm in arms}
    print(f"load time p50, off: {off.p50:.1f} ms; floor: {bare.p50:.1f} ms; all on: {on.p50:.1f} ms")
    print(
        f"floor / off:  {bare.p50 / off.p50:.2f}x ({bare.p50 / off.p50 - 1:+.1%}, Chromium's instrumentation)"
    )
    print(f"all on / off: {on.p50 / off.p50:.2f}x ({on.p50 / off.p50 - 1:+.1%}, target <= +10 %)")
    print(f"all on / floor: {on.p50 / bare.p50:.2f}x ({on.p50 / bare.p50 - 1:+.1%}, the monitor's own cost)")
    print(
        f"the page's own loadEventEnd p50, off: {medians['off']:.1f} ms; floor: {medians['floor']:.1f} ms "
        f"({medians['floor'] / medians['off'] - 1:+.1%}); all on: {medians['all on']:.1f} ms "
        f"({medians['all on'] / medians['off'] - 1:+.1%})"
    )
    cpu = ", ".join(f"{arm}: {statistics.median(agent_cpu[arm]):.0f} ms" for arm in arms)
    print(f"agent CPU per page load (p50; the bench's polling goes through its CDP proxy): {cpu}")


async def _cpu_section(box: Sandbox, http: aiohttp.ClientSession, page: PageSession, base: str) -> None:
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    choices: list[tuple[str, Mapping[str, object]]] = [
        ("off", {}),
        ("console on", {"console": {}}),
        ("all on", ALL),
    ]
    cpu: dict[str, float] = {}
    print("\n## telemetry: agent CPU while a page logs 1,000 lines/s (10 s each)")
    for label, browser in choices:
        await _configure(http, box, browser)
        await _load(page, base + "/ticker")
        await asyncio.sleep(0.5)
        before, start = agent.cpu_times(), time.monotonic()
        await asyncio.sleep(10.0)
        after, wall = agent.cpu_times(), time.monotonic() - start
        logged = await _evaluate(page, "n")
        used = (after.user + after.system - before.user - before.system) / wall * 100
        cpu[label] = used
        ratio = f", {used / cpu['off']:.1f}x off" if label != "off" and cpu["off"] > 0 else ""
        print(f"agent CPU, telemetry {label}: {used:.1f} % of one core{ratio} (page logged {logged} lines)")
    await _load(page, base + "/blank")


async def _flood_section(box: Sandbox, http: aiohttp.ClientSession, page: PageSession, base: str) -> None:
    """Where the flood's limit is: the page times its own console.log loop with no Runtime client, with the
    agent's monitor, and with a bare client that only reads; the agent's CPU meanwhile."""
    agent = psutil.Process(int(box.supervisorctl("pid", "agent").strip()))
    lines = int(os.environ.get("TELEMETRY_FLOOD_LINES", str(FLOOD_LINES)))
    chunk = min(lines, 25_000)
    loop = "(() => { const t = performance.now();"
    loop += f" for (let i = 0; i < {chunk}; i++) console.log('flood ' + i);"
    loop += " return performance.now() - t; })()"

    async def flood(label: str) -> None:
        await _load(page, base + "/blank")
        before, start = agent.cpu_times(), time.monotonic()
        in_page = 0.0
        for _ in range(lines // chunk):
            in_page += float(await _evaluate(page, loop, 600))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        received = await _drained()
        wall = time.monotonic() - start
        after = agent.cpu_times()
        used = after.user + after.system - before.user - before.system
        print(
            f"{label:38} page loop {lines / (in_page / 1000):9,.0f} lines/s; "
            f"to the collector {lines / wall:9,.0f} lines/s; agent CPU {used / wall * 100:5.1f} % "
            f"({used:.1f} s){received}"
        )

    async def _drained() -> str:
        # Telemetry on: wait until the monitor's queue is empty (every line reached the collector).
        for _ in range(6000):
            async with http.get(box.agent_url + "/health") as response:
                monitor = (await response.json())["telemetry"]["monitor"]
            if not monitor["running"] or monitor["queued_cdp_events"] == 0:
                return f", dropped {monitor['dropped_cdp_events']}" if monitor["running"] else ""
            await asyncio.sleep(0.1)
        return ", not drained"

    print(f"\n## telemetry: {lines:,} console.log lines in chunks of {chunk:,}")
    await _configure(http, box, {})
    await flood("no Runtime client")
    await _configure(http, box, {"console": {}})
    await flood("agent monitor (console on)")
    await _configure(http, box, {})
    bare = await PageSession.open(box.cdp_url)  # a second client of the page that enables Runtime only
    try:
        await bare.call("Runtime.enable")
        await flood("a bare client (Runtime.enable, reads)")
    finally:
        await bare.close()


async def _svg_section(box: Sandbox, http: aiohttp.ClientSession, page: PageSession, base: str) -> None:
    """The page as the first version of this bench had it (200 SVG images): load it again and again."""
    await _configure(http, box, {})
    print("\n## telemetry off: the same page with 200 SVG <img>s instead of PNGs, loaded 30 times")
    for i in range(30):
        await _load(page, base + "/blank")
        try:
            wall, _ = await _load(page, base + "/svg-page")
        except (TimeoutError, CDPError) as exc:
            print(f"SVG page: load {i + 1} hung ({exc!r})")
            return
        print(f"SVG page load {i + 1}: {wall:.0f} ms", flush=True)


SECTIONS: dict[str, Callable[[Sandbox, aiohttp.ClientSession, PageSession, str], Awaitable[None]]] = {
    "sse": _sse,
    "load": _load_section,
    "cpu": _cpu_section,
    "flood": _flood_section,
    "svg": _svg_section,
}


async def run(box: Sandbox, chosen: list[str]) -> None:
    runner, base = await _serve()
    BOX.append(box)
    try:
        async with aiohttp.ClientSession() as http:
            page = await PageSession.open(box.cdp_url)
            try:
                for name in chosen:
                    await SECTIONS[name](box, http, page, base)
                    sys.stdout.flush()
            finally:
                await page.close()
            await _configure(http, box, {"control": {}, "connection": {}, "system": {}})
    finally:
        await runner.cleanup()


def main() -> None:
    chosen = [s for s in os.environ.get("TELEMETRY_BENCH", ",".join(SECTIONS)).split(",") if s]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"TELEMETRY_BENCH: unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    with sandbox(telemetry_buffer_events=FILL + 1000) as box:
        asyncio.run(run(box, chosen))


if __name__ == "__main__" and sys.argv[1:2] == ["--floor"]:
    asyncio.run(_floor_main(sys.argv[2]))
