"""Helpers for the /process tests: a small client, an incremental SSE reader, a throwaway user."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import grp
import json
import pwd
import random
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import psutil
import pytest

from agent.spec import Spec, check
from tests.conftest import AgentClient, Reply

SPEC = Spec.load()
VALIDATORS = {
    name: SPEC.schema_validator(name)
    for name in (
        "ProcessExecResult",
        "ProcessSpawnResult",
        "ProcessStatus",
        "ProcessStdinResult",
        "ProcessStreamEvent",
        "OkResponse",
        "Error",
    )
}


def ok(reply: Reply, schema: str) -> dict[str, Any]:
    """A 200 whose body matches `#/components/schemas/<schema>`."""
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.json()
    check(VALIDATORS[schema], body)
    return body


def error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply
    body = reply.json()
    check(VALIDATORS["Error"], body)
    message: str = body["message"]
    return message


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class Processes:
    """The /process routes, checked against the spec on the way back."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent

    async def exec(self, **body: Any) -> dict[str, Any]:
        return ok(await self.agent.post("/process/exec", body), "ProcessExecResult")

    async def spawn(self, **body: Any) -> dict[str, Any]:
        return ok(await self.agent.post("/process/spawn", body), "ProcessSpawnResult")

    async def status(self, process_id: str) -> dict[str, Any]:
        return ok(await self.agent.get(f"/process/{process_id}/status"), "ProcessStatus")

    async def stdin(self, process_id: str, data: bytes | str, **extra: Any) -> int:
        reply = await self.agent.post(f"/process/{process_id}/stdin", {"data_b64": b64(data), **extra})
        written: int = ok(reply, "ProcessStdinResult")["written_bytes"]
        return written

    async def kill(self, process_id: str, signal: str = "TERM") -> None:
        ok(await self.agent.post(f"/process/{process_id}/kill", {"signal": signal}), "OkResponse")

    async def resize(self, process_id: str, rows: int, cols: int) -> None:
        ok(await self.agent.post(f"/process/{process_id}/resize", {"rows": rows, "cols": cols}), "OkResponse")

    async def wait_exited(self, process_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status(process_id)
            if status["state"] == "exited":
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"process {process_id} still running after {timeout}s: {status}")
            await asyncio.sleep(0.05)

    def stream(self, process_id: str, last_event_id: int | None = None) -> OutputStream:
        return OutputStream(self.agent, process_id, last_event_id)

    async def output(self, process_id: str, last_event_id: int | None = None) -> Collected:
        """The whole stream, to its end (the exit event)."""
        async with self.stream(process_id, last_event_id) as stream:
            await stream.until_exit()
            return stream.collected


class Collected:
    def __init__(self) -> None:
        self.events: list[tuple[int | None, dict[str, Any]]] = []

    def data(self, stream: str | None = None) -> bytes:
        return b"".join(
            unb64(e["data_b64"]) for _, e in self.events if "data_b64" in e and stream in (None, e["stream"])
        )

    @property
    def exit(self) -> dict[str, Any] | None:
        exits = [e for _, e in self.events if e.get("event") == "exit"]
        assert len(exits) <= 1, exits
        return exits[0] if exits else None

    @property
    def ids(self) -> list[int | None]:
        return [i for i, _ in self.events]


class OutputStream:
    """GET /process/{id}/stdout/stream read frame by frame, checked against ProcessStreamEvent."""

    def __init__(self, agent: AgentClient, process_id: str, last_event_id: int | None) -> None:
        self.agent = agent
        self.process_id = process_id
        self.last_event_id = last_event_id
        self.collected = Collected()
        self.ended = False
        self._response: aiohttp.ClientResponse | None = None
        self._pending = b""

    async def __aenter__(self) -> OutputStream:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": str(self.last_event_id)}
        self._response = await self.agent.http.get(
            f"{self.agent.base_url}/process/{self.process_id}/stdout/stream", headers=headers
        )
        assert self._response.status == 200, await self._response.text()
        assert self._response.headers["Content-Type"].startswith("text/event-stream")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.close()

    async def _read_frame(self) -> bool:
        assert self._response is not None
        while b"\n\n" not in self._pending:
            chunk = await self._response.content.readany()
            if not chunk:
                self.ended = True
                return False
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n\n", 1)
        event_id: int | None = None
        data = None
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            assert field in ("id", "data"), f"unexpected SSE line {line!r}"
            if field == "id":
                event_id = int(value)
            else:
                data = json.loads(value)
        if data is not None:
            check(VALIDATORS["ProcessStreamEvent"], data)
            self.collected.events.append((event_id, data))
        return True

    async def until(self, predicate: Callable[[Collected], bool], timeout: float = 20.0) -> Collected:
        async def loop() -> None:
            while not predicate(self.collected):
                if not await self._read_frame():
                    raise AssertionError(f"stream ended first: {self.collected.data()[-500:]!r}")

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"not seen in {timeout}s; got {self.collected.data()[-500:]!r}") from None
        return self.collected

    async def until_output(self, needle: bytes, timeout: float = 20.0) -> Collected:
        return await self.until(lambda c: needle in c.data(), timeout)

    async def until_exit(self, timeout: float = 30.0) -> dict[str, Any]:
        await self.until(lambda c: c.exit is not None, timeout)
        exit_event = self.collected.exit
        assert exit_event is not None
        # The exit event is the last one, and the stream ends after it.
        assert self.collected.events[-1][1] is exit_event
        assert not await self._read_frame()
        return exit_event


@pytest.fixture
def processes(agent: AgentClient) -> Processes:
    return Processes(agent)


@pytest.fixture(scope="session")
def agent_pid(sandbox: Any) -> int:
    """The agent daemon's pid: the process listening on the agent's port."""
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == sandbox.config.port:
            assert conn.pid is not None
            return conn.pid
    raise AssertionError("no process listens on the agent's port")


# Tests find their own processes by command line (`sleep 1234.<RUN>`), unique per run: another test run on
# the same machine (other sessions run the whole suite) must not be mistaken for ours.
RUN = f"{random.randrange(10**6):06d}"


def secs(seconds: int) -> str:
    """A `sleep` argument unique to this run that still sleeps about `seconds`."""
    return f"{seconds}.{RUN}"


def live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_with_cmdline(*argv: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line is exactly `argv`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == list(argv) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


TEST_USER = f"apt{RUN}"  # unique per run too: a concurrent run's teardown must not delete our user
TEST_GROUP = f"aptg{RUN}"


@pytest.fixture(scope="session")
def test_user() -> Iterator[pwd.struct_passwd]:
    """A real user (and an extra group it belongs to), created for the run and removed after it."""
    subprocess.run(["userdel", "-r", TEST_USER], capture_output=True, check=False)
    subprocess.run(["groupdel", TEST_GROUP], capture_output=True, check=False)
    subprocess.run(["groupadd", TEST_GROUP], check=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-G", TEST_GROUP, TEST_USER], check=True)
    try:
        yield pwd.getpwnam(TEST_USER)
    finally:
        subprocess.run(["userdel", "-r", TEST_USER], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            grp.getgrnam(TEST_GROUP)
            subprocess.run(["groupdel", TEST_GROUP], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def attached(agent: AgentClient, process_id: str, **params: str) -> AsyncIterator[Terminal]:
    async with agent.http.ws_connect(f"{agent.base_url}/process/{process_id}/attach", params=params) as ws:
        yield Terminal(ws)


class Terminal:
    """The attach WebSocket as an xterm.js-style client uses it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.output = b""
        self.controls: list[dict[str, Any]] = []
        self.closed = False

    async def until(self, predicate: Callable[[Terminal], bool], timeout: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate(self):
                message = await self.ws.receive()
                if message.type == aiohttp.WSMsgType.BINARY:
                    self.output += message.data
                elif message.type == aiohttp.WSMsgType.TEXT:
                    self.controls.append(json.loads(message.data))
                else:
                    self.closed = True
                    if not predicate(self):
                        raise AssertionError(
                            f"socket closed first ({message.type}); got {self.output[-300:]!r}"
                        )

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"not seen in {timeout}s; got {self.output[-500:]!r}") from None

    async def until_output(self, needle: bytes, timeout: float = 20.0) -> None:
        await self.until(lambda t: needle in t.output, timeout)
