"""No leaks: fds, zombies, and children that outlive the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import aiohttp
import psutil

from harness.sandboxes import free_port
from tests.conftest import AgentClient

from .conftest import Processes, attached, eventually, live, live_with_cmdline, secs


def fd_count(pid: int) -> int:
    """The agent's open fds other than sockets (the client's pooled connections come and go)."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                count += 1
    return count


def zombie_children(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if p.status() == psutil.STATUS_ZOMBIE]


async def test_many_processes_leak_no_fds_and_leave_no_zombies(
    agent: AgentClient, processes: Processes, agent_pid: int
) -> None:
    # Warm up whatever the agent opens once (thread pools, the connection this client keeps).
    await processes.exec(command="true")
    await processes.output((await processes.spawn(command="true", allocate_tty=True))["process_id"])
    before = fd_count(agent_pid)
    timed = await asyncio.gather(
        *(processes.spawn(command="sleep 100 & wait", timeout_sec=1) for _ in range(15))
    )
    for i in range(15):
        await processes.exec(command="echo x; echo y >&2", timeout_sec=5)
        pipe = await processes.spawn(command="cat")
        await processes.stdin(pipe["process_id"], "hello\n", eof=True)
        assert (await processes.output(pipe["process_id"])).data() == b"hello\n"
        tty = await processes.spawn(command="bash", args=["--norc", "-i"], allocate_tty=True)
        if i % 3 == 0:
            async with attached(agent, tty["process_id"]) as term:
                await term.ws.send_bytes(b"exit 0\n")
                await term.until(lambda t: t.closed)
        else:
            await processes.kill(tty["process_id"], "KILL")
        await processes.output(tty["process_id"])
    for spawned in timed:
        assert (await processes.output(spawned["process_id"])).exit == {
            "event": "exit",
            "exit_code": 124,
            "timed_out": True,
        }
    await eventually(lambda: not zombie_children(agent_pid), 10, "no zombie children of the agent")
    await eventually(lambda: fd_count(agent_pid) <= before, 10, "the agent's fd count back to normal")


async def test_stopping_the_daemon_ends_every_child(tmp_path: object) -> None:
    """A daemon with the process capability, stopped with SIGTERM as supervisord does."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import logging
        from aiohttp import web
        from agent import spec
        from agent.config import Config
        from agent.errors import error_middleware
        from agent.capability import install
        from agent.events import CAPABILITY as CORE
        from agent.process.capability import CAPABILITY

        logging.basicConfig(level=logging.INFO)
        app = web.Application(middlewares=[error_middleware, spec.validation_middleware(1 << 20)])
        app[spec.SPEC_KEY] = spec.Spec.load()
        install(app, Config(process_kill_grace_s=0.5), app[spec.SPEC_KEY], [CORE, CAPABILITY])
        web.run_app(app, host="127.0.0.1", port={port}, print=None, handler_cancellation=True,
                    shutdown_timeout=1.0)
        """
    )
    daemon = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, "-c", script], cwd=os.getcwd(), start_new_session=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.post(base + "/process/exec", json={"command": "true"}) as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            pids = []
            for body in (
                {"command": f"sleep {secs(1261)} & sleep {secs(1261)}"},
                {"command": f"trap '' TERM; sleep {secs(1262)} & wait"},
                {"command": "bash", "args": ["--norc", "-i"], "allocate_tty": True},
                {"command": f"setsid sleep {secs(1263)} & wait"},
            ):
                async with http.post(base + "/process/spawn", json=body) as reply:
                    assert reply.status == 200, await reply.text()
                    pids.append((await reply.json())["pid"])
            # an exec still running when the daemon stops
            pending = asyncio.ensure_future(
                http.post(base + "/process/exec", json={"command": f"sleep {secs(1264)}"})
            )
            await eventually(
                lambda: all(live_with_cmdline("sleep", secs(n)) for n in (1261, 1262, 1263, 1264)),
                10,
                "started",
            )
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(daemon.wait, 20) == 0
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        for pid in pids:
            assert not live(pid), pid
        for n in (1261, 1262, 1263, 1264):
            assert not live_with_cmdline("sleep", secs(n)), n
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
