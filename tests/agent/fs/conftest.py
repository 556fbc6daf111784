"""Helpers for the /fs tests: a fresh directory inside the sandbox's fs root, spec checks, an SSE reader.

The test sandbox confines /fs to `<state dir>/fs` (AGENT_FS_ROOT, set by `Sandbox.environment()`), so every
test works in its own directory under it (`workdir`), creates its fixtures there with plain Python file calls
(the agent and the tests share the disk), and can never touch the host's files through the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from agent.spec import Spec, check
from tests.conftest import AgentClient, Reply

SPEC = Spec.load()
VALIDATORS = {
    name: SPEC.schema_validator(name) for name in ("FileInfo", "ListFiles", "FileSystemEvent", "Error")
}


def matches(schema: str, body: Any) -> Any:
    check(VALIDATORS[schema], body)
    return body


def error(reply: Reply, status: int) -> str:
    """The reply is `status` with a spec Error body; its message."""
    assert reply.status == status, reply
    body = matches("Error", reply.json())
    message: str = body["message"]
    return message


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def fs_root(sandbox: Sandbox) -> Path:
    root = sandbox.state_dir / "fs"
    assert root.is_dir()
    return root


@pytest.fixture
def workdir(fs_root: Path) -> Path:
    """A fresh directory inside the agent's fs root for one test."""
    directory = fs_root / f"t-{uuid.uuid4().hex[:10]}"
    directory.mkdir()
    return directory


def names(directory: Path) -> list[str]:
    """What a directory holds, sorted (temp and staging files included: tests check none is left)."""
    return sorted(p.name for p in directory.iterdir())


def exists(path: Path | str) -> bool:
    return Path(path).exists() or Path(path).is_symlink()


def agent_pid(sandbox: Sandbox) -> int:
    return int(sandbox.supervisorctl("pid", "agent").strip())


class FsClient:
    """The /fs routes as the SDK calls them (raw bodies, JSON with PUT)."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent

    async def put(self, route: str, body: dict[str, Any]) -> Reply:
        return await self.agent.request("PUT", route, json=body)

    async def write(self, path: str | Path, data: bytes, mode: str | None = None) -> Reply:
        params = {"path": str(path), **({"mode": mode} if mode else {})}
        headers = {"Content-Type": "application/octet-stream"}
        return await self.agent.request("PUT", "/fs/write_file", params=params, data=data, headers=headers)

    async def read(self, path: str | Path) -> Reply:
        return await self.agent.get("/fs/read_file", params={"path": str(path)})

    async def info(self, path: str | Path) -> Reply:
        return await self.agent.get("/fs/file_info", params={"path": str(path)})

    async def list(self, path: str | Path) -> Reply:
        return await self.agent.get("/fs/list_files", params={"path": str(path)})


@pytest.fixture
def fs(agent: AgentClient) -> FsClient:
    return FsClient(agent)


class EventStream:
    """Reads an SSE stream in the background: every (id, data) frame it got, in order."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.frames: list[tuple[int | None, dict[str, Any]]] = []
        self.ended = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(), name="test-sse-reader")

    async def _read(self) -> None:
        event_id: int | None = None
        try:
            async for raw in self.response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    self.frames.append((event_id, json.loads(line[6:])))
                elif line == "":
                    event_id = None
                else:
                    assert line.startswith(":"), f"unexpected SSE line {line!r}"
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            pass
        finally:
            self.ended.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [data for _, data in self.frames]

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.events):
            if asyncio.get_running_loop().time() > deadline or self.ended.is_set():
                raise AssertionError(f"expected events never came; got {self.events}")
            await asyncio.sleep(0.02)
        return self.events

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self.response.close()


@contextlib.asynccontextmanager
async def event_stream(
    http: aiohttp.ClientSession, url: str, last_event_id: int | None = None
) -> AsyncIterator[EventStream]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    response = await http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    reader = EventStream(response)
    try:
        yield reader
    finally:
        await reader.close()


def has(kind: str, path: Path | str, is_dir: bool | None = None) -> Callable[[list[dict[str, Any]]], bool]:
    def predicate(events: list[dict[str, Any]]) -> bool:
        return any(
            e["type"] == kind and e["path"] == str(path) and (is_dir is None or e["is_dir"] == is_dir)
            for e in events
        )

    return predicate
