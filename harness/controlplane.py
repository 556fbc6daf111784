"""Real control-plane parts for tests: CURVE keys on disk, a gateway on a free port, an in-process agent link,
and a loopback TCP relay that can stop forwarding (a black-holed network)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from agent.control.link import CurveKeys, Link, load_keys
from agent.control.protocol import AgentProtocol, ApplyConfig, Command, Identity, Settings
from agent.sandbox import Sandbox
from controlplane.gateway import Gateway
from controlplane.store import Store
from harness.sandboxes import free_port, private_sandbox


class Keys:
    """The CP's keypair and one agent's certificate file in `root`."""

    def __init__(self, root: Path, agent: str = "agent") -> None:
        self.root = root
        self.cp_public, self.cp_secret = zmq.curve_keypair()
        public_file, secret_file = zmq.auth.create_certificates(str(root), agent)
        self.agent_cert = secret_file
        self.agent_public = Path(public_file).read_text().split('public-key = "')[1].split('"')[0]

    def agent_keys(self) -> CurveKeys:
        return load_keys(self.agent_cert, self.cp_public.decode())


async def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def gateway(
    keys: Keys, db: Path, port: int, *, agent_id: str = "agent-1", **kw: Any
) -> AsyncIterator[Gateway]:
    store = Store(db)
    gw = Gateway(store, f"tcp://127.0.0.1:{port}", keys.cp_public, keys.cp_secret, **kw)
    await gw.register(agent_id, keys.agent_public)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()
        store.close()


class InProcessAgent:
    """The agent's real link (protocol + pyzmq shell) with events and commands driven by the test."""

    def __init__(self, keys: CurveKeys, url: str, settings: Settings, sid: str | None = None) -> None:
        ident = Identity("agent-1", sid or uuid.uuid4().hex, base_url="http://127.0.0.1:1")
        self.protocol = AgentProtocol(ident, settings, random.Random(1))
        self.commands: list[Command] = []
        self.configs: list[ApplyConfig] = []
        self.link = Link(url, keys, self.protocol, self.commands.append, self.configs.append, tick_s=0.02)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessAgent:
        self.task = asyncio.get_running_loop().create_task(self.link.run(), name="test-agent-link")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.link.close()


class Relay:
    """A loopback TCP relay; `blackhole = True` keeps connections open but forwards nothing."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if not self.blackhole:
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def linked_sandbox(**overrides: Any) -> AsyncIterator[tuple[Gateway, Sandbox, Path]]:
    """A real sandbox whose agent links to a real gateway (heartbeat 0.5 s) as agent-1."""
    root = Path(tempfile.mkdtemp(prefix="agent-test-control-"))
    try:
        keys, port = Keys(root), free_port()
        async with gateway(keys, root / "cp.db", port, heartbeat_s=0.5) as gw:
            box_cm = private_sandbox(
                "agent-test-control-box-",
                control_url=f"tcp://127.0.0.1:{port}",
                control_server_key=keys.cp_public.decode(),
                control_key_file=keys.agent_cert,
                control_agent_id="agent-1",
                **overrides,
            )
            # The sandbox starts in a thread: the gateway keeps answering meanwhile.
            box = await asyncio.to_thread(box_cm.__enter__)
            try:
                yield gw, box, root
            finally:
                await asyncio.to_thread(box_cm.__exit__, None, None, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
