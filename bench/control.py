"""The control link: events/s from one agent to the CP with zero loss, command round trip (CP → agent →
result stored), and the CP's CPU and memory per connected agent. Real sockets (CURVE), the real gateway and
SQLite store; the round trip against a real sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from agent.control.protocol import READY, Settings
from bench.common import Timing, measure, report, sandbox
from harness.controlplane import InProcessAgent, Keys, gateway, wait_for
from harness.sandboxes import free_port

EVENTS = 30_000
REPO = Path(__file__).resolve().parent.parent


async def events_per_second(root: Path, settings: Settings, label: str) -> float:
    keys, port = Keys(root), free_port()
    db = root / f"{label}.db"
    async with (
        gateway(keys, db, port, heartbeat_s=1.0) as gw,
        InProcessAgent(keys.agent_keys(), f"tcp://127.0.0.1:{port}", settings) as agent,
    ):
        await wait_for(lambda: agent.protocol.state == READY, what="welcome")
        start = time.perf_counter()
        for i in range(EVENTS):
            agent.link.emit("process.exit", {"i": i, "pad": "x" * 100})
            # Zero loss: the producer waits while the link's buffer is half full (it holds 10 000).
            while agent.protocol.buffered > 5000:  # noqa: ASYNC110 (polling the buffer is the point)
                await asyncio.sleep(0.001)
            if i % 500 == 0:
                await asyncio.sleep(0)
        await wait_for(lambda: agent.protocol.buffered == 0, 300, "all acked")
        elapsed = time.perf_counter() - start
        stored = gw.store.count_events("agent-1")
        assert stored == EVENTS and sum(agent.protocol.dropped.values()) == 0, (
            stored,
            agent.protocol.dropped,
        )
        return EVENTS / elapsed


AGENTS_SCRIPT = """
import asyncio, sys
from agent.control.protocol import Settings
from agent.control.link import load_keys
from harness.controlplane import InProcessAgent
async def main():
    url, server, certs = sys.argv[1], sys.argv[2], sys.argv[3:]
    agents = [InProcessAgent(load_keys(c, server), url, Settings(heartbeat_s=1.0)) for c in certs]
    for a in agents:
        await a.__aenter__()
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def per_agent_cost(root: Path, count: int) -> tuple[float, float]:
    import zmq.auth

    keys, port = Keys(root), free_port()
    certs = []
    for i in range(count):
        _, secret = zmq.auth.create_certificates(str(root), f"a{i}")
        certs.append(secret)
    me = psutil.Process()
    async with gateway(keys, root / "cost.db", port, heartbeat_s=1.0) as gw:
        for i, cert in enumerate(certs):
            public, _ = zmq.auth.load_certificate(cert.replace(".key_secret", ".key"))
            await gw.register(f"a{i}", public.decode())
        await asyncio.sleep(1.0)
        rss_before = me.memory_info().rss
        child = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-c",
                AGENTS_SCRIPT,
                f"tcp://127.0.0.1:{port}",
                keys.cp_public.decode(),
                *certs,
            ],
            cwd=REPO,
        )
        try:
            await wait_for(lambda: sum(c.welcomed for c in gw.agents.values()) == count, 60, "all agents")
            await asyncio.sleep(2.0)
            cpu0 = me.cpu_times()
            t0 = time.monotonic()
            await asyncio.sleep(10.0)
            cpu1 = me.cpu_times()
            wall = time.monotonic() - t0
            cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall * 100
            rss = me.memory_info().rss - rss_before
        finally:
            child.terminate()
            await child.wait()
    return cpu / count, rss / count / 1024


async def round_trips() -> tuple[Timing, Timing]:
    root = Path(tempfile.mkdtemp(prefix="agent-bench-control-"))
    try:
        keys, port = Keys(root), free_port()
        async with gateway(keys, root / "rt.db", port, heartbeat_s=1.0) as gw:
            box_cm = sandbox(
                control_url=f"tcp://127.0.0.1:{port}",
                control_server_key=keys.cp_public.decode(),
                control_key_file=keys.agent_cert,
                control_agent_id="agent-1",
            )
            box = await asyncio.to_thread(box_cm.__enter__)
            try:
                await wait_for(lambda: "agent-1" in gw.agents and gw.agents["agent-1"].welcomed, 60, "HELLO")

                async def command() -> Any:
                    done = await gw.command("agent-1", "getMousePosition", {})
                    assert done["ok"], done
                    return done

                ours = await measure("CMD over the link → result event stored (CP)", 200, command)
                async with aiohttp.ClientSession() as http:

                    async def direct() -> Any:
                        url = f"http://127.0.0.1:{box.config.port}/computer/get_mouse_position"
                        async with http.post(url) as response:
                            return await response.read()

                    peer = await measure(
                        "HTTP POST to the agent directly (no CP, nothing stored)", 200, direct
                    )
            finally:
                await asyncio.to_thread(box_cm.__exit__, None, None, None)
        return ours, peer
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def run() -> None:
    root = Path(tempfile.mkdtemp(prefix="agent-bench-control-"))
    try:
        batched = await events_per_second(root, Settings(heartbeat_s=1.0), "batched")
        single = await events_per_second(root, Settings(heartbeat_s=1.0, max_batch=1), "single")
        print("\n## control link: events/s from one agent, all stored and acked, zero loss")
        print(f"{'way':58} {'events/s':>10} {'ratio':>8}")
        print(f"{'ours: batched EVT frames (≤512 events, credit 1000)':58} {batched:10.0f} {'1.0':>8}")
        print(f"{'one event per frame':58} {single:10.0f} {batched / single:7.1f}x")
        ours, peer = await round_trips()
        report("control link: command round trip (getMousePosition)", ours, [peer])
        cpu, kib = await per_agent_cost(root, 50)
        print("\n## control plane cost per connected agent (50 agents, heartbeats every 1 s)")
        print(f"CPU {cpu:.3f} % of one core per agent; memory {kib:.0f} KiB per agent")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
