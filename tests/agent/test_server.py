"""The HTTP server's read timeouts (agent/server.py), on a sandbox of its own started with 1 s timeouts.

A connection that sends nothing, half a request head, or half a body, or that stays idle after a response, is
closed within a few seconds; a thousand of them do not starve /health; long SSE streams, websockets and slow
but flowing uploads are never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import resource
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_runner import AppRunner
from aiohttp.web_server import Server

from agent.sandbox import Sandbox
from agent.server import GuardedHandler
from harness.sandboxes import private_sandbox
from tests.agent.process.conftest import Processes
from tests.conftest import AgentClient

TIMEOUT_S = 1.0
# "Closed within a few seconds": the timeout plus generous slack for a busy 2-core machine.
CLOSED_WITHIN_S = 8.0


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with private_sandbox(
        "agent-test-server-",
        http_header_timeout_s=TIMEOUT_S,
        http_body_timeout_s=TIMEOUT_S,
        http_idle_timeout_s=TIMEOUT_S,
    ) as sandbox:
        yield sandbox
    shutil.rmtree(sandbox.state_dir, ignore_errors=True)  # the helper leaves it


@pytest.fixture
async def client(box: Sandbox) -> AsyncIterator[AgentClient]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        yield AgentClient(box.agent_url, http)


@pytest.fixture
def workdir(box: Sandbox) -> Path:
    directory = box.state_dir / "fs" / f"t-{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True)
    return directory


@contextlib.asynccontextmanager
async def raw(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def until_closed(reader: asyncio.StreamReader, within: float = CLOSED_WITHIN_S) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is open after `within`."""
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        raise AssertionError(f"the connection is still open after {within} s; got {data[:300]!r}") from None
    except ConnectionResetError:
        pass
    return data


def status_and_body(response: bytes) -> tuple[int, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request_head(method: str, path: str, port: int, headers: dict[str, str | int] | None = None) -> bytes:
    extra = [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def port_of(box: Sandbox) -> int:
    return box.config.port


# --- the library ---


def test_the_aiohttp_internals_the_guard_uses_are_still_there() -> None:
    """agent/server.py relies on these; an aiohttp upgrade that changes them must fail here, loudly."""
    slots = {name for cls in RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    needed = {
        "_keepalive_handle",
        "_current_request",
        "_messages",
        "_request_count",
        "_upgraded",
        "_payload_parser",
        "_force_close",
    }
    assert needed <= slots, needed - slots
    assert "transport" in dir(RequestHandler)
    parameters = inspect.signature(RequestHandler.finish_response).parameters
    assert list(parameters) == ["self", "request", "resp", "start_time"]
    assert "keepalive_timeout" in inspect.signature(RequestHandler.__init__).parameters
    assert hasattr(AppRunner, "_make_server")
    server_init = inspect.signature(Server.__init__).parameters
    assert {"handler", "request_factory", "handler_cancellation", "loop"} <= set(server_init)
    source = inspect.getsource(Server.__init__)
    assert "self._kwargs = kwargs" in source and "self._loop" in source
    assert issubclass(GuardedHandler, RequestHandler)


# --- what is closed ---


async def test_a_connection_that_sends_nothing_is_closed(box: Sandbox) -> None:
    for port in (box.config.port, box.config.cdp_port):  # the API and the CDP proxy
        async with raw(port) as (reader, _):
            assert await until_closed(reader) == b""  # nothing asked, nothing answered


async def test_half_a_request_head_gets_a_408_and_is_closed(box: Sandbox) -> None:
    for port in (box.config.port, box.config.cdp_port):
        async with raw(port) as (reader, writer):
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
            status, body = status_and_body(await until_closed(reader))
            assert status == 408
            assert json.loads(body)["code"] == "request_timeout"


async def test_a_head_trickled_byte_by_byte_is_still_bounded(box: Sandbox) -> None:
    """Bytes that keep coming do not extend the head's deadline (slowloris)."""
    async with raw(port_of(box)) as (reader, writer):

        async def trickle() -> None:
            with contextlib.suppress(OSError):
                writer.write(b"GET /health HTTP/1.1\r\n")
                for _ in range(100):
                    writer.write(b"X-A: b\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.2)

        task = asyncio.create_task(trickle(), name="test-trickle")
        try:
            assert status_and_body(await until_closed(reader))[0] == 408
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_stalled_body_is_cut_and_nothing_is_written(
    box: Sandbox, workdir: Path, client: AgentClient
) -> None:
    port = port_of(box)
    # A multipart upload that stops half-way.
    dest = workdir / "never.bin"
    boundary = "stall"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files[0][dest_path]"\r\n\r\n{dest}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files[0][file]"; filename="a"\r\n\r\n'
    ).encode() + b"x" * 1000
    head = request_head(
        "POST",
        "/fs/upload",
        port,
        {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": 100_000},
    )
    async with raw(port) as (reader, writer):
        writer.write(head + start)
        status, body = status_and_body(await until_closed(reader))
        assert status == 408 and json.loads(body)["code"] == "request_timeout"
    # A large write_file (the splice path, which reads the socket itself) that stops half-way.
    big = workdir / "big.bin"
    length = 4 * 1024 * 1024
    head = request_head(
        "PUT",
        f"/fs/write_file?path={big}",
        port,
        {"Content-Type": "application/octet-stream", "Content-Length": length},
    )
    async with raw(port) as (reader, writer):
        writer.write(head + os.urandom(length // 2))
        status, body = status_and_body(await until_closed(reader))
        assert status == 400 and "sent nothing for 1 s" in json.loads(body)["message"]
    assert os.listdir(workdir) == []  # no file, no temp file
    assert (await client.get("/health")).status == 200


async def test_an_idle_keep_alive_connection_is_closed(box: Sandbox) -> None:
    port = port_of(box)
    async with raw(port) as (reader, writer):
        writer.write(request_head("GET", "/health", port))
        first = await reader.readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200")
        length = next(
            int(line.split(b":")[1])
            for line in first.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        # Kept alive, then idle: closed without a word.
        assert await until_closed(reader) == b""


async def test_a_thousand_idle_connections_do_not_starve_health(box: Sandbox, client: AgentClient) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = port_of(box)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(10):  # in batches: the listen backlog is 128
            held += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(100)))
        # While they are held (they are closed after 1 s), /health answers.
        for _ in range(5):
            reply = await client.get("/health")
            assert reply.status == 200, reply
        closed = await asyncio.gather(*(until_closed(reader, 20.0) for reader, _ in held))
        assert closed == [b""] * len(held)
        assert (await client.get("/health")).status == 200
    finally:
        for _, writer in held:
            writer.close()


# --- what is not cut ---


async def test_a_quiet_sse_stream_and_a_websocket_are_not_cut(box: Sandbox, client: AgentClient) -> None:
    processes = Processes(client)
    # Silent for 3 s (three timeouts, and no SSE keepalive comes that soon) between two lines.
    spawned = await processes.spawn(command="echo start; sleep 3; echo end")
    async with client.http.get(box.cdp_url + "/json/version") as response:
        browser_ws = (await response.json())["webSocketDebuggerUrl"]
    async with websockets.connect(browser_ws, max_size=None) as ws:
        collected = await processes.output(spawned["process_id"])
        assert collected.data("stdout") == b"start\nend\n"
        assert collected.exit is not None and collected.exit["exit_code"] == 0
        # The websocket sat idle all that time and still works.
        await ws.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["result"]["product"].startswith("Chrome/")


async def test_slow_but_flowing_uploads_are_not_cut(box: Sandbox, workdir: Path) -> None:
    port = port_of(box)
    for name, chunk, count in (
        ("small.bin", 1000, 8),
        ("large.bin", 512 * 1024, 8),
    ):  # large: the splice path
        data = os.urandom(chunk * count)
        dest = workdir / name
        head = request_head(
            "PUT",
            f"/fs/write_file?path={dest}",
            port,
            {
                "Content-Type": "application/octet-stream",
                "Content-Length": len(data),
                "Connection": "close",
            },
        )
        async with raw(port) as (reader, writer):
            writer.write(head)
            for i in range(count):  # 4 s in all, a pause of 0.5 s (half the timeout) between chunks
                await asyncio.sleep(0.5)
                writer.write(data[i * chunk : (i + 1) * chunk])
                await writer.drain()
            status, _ = status_and_body(await until_closed(reader, 30.0))
        assert status == 201, name
        assert dest.read_bytes() == data
