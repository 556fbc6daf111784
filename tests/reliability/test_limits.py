"""Resource limits (issue 13, item 4), on a sandbox of its own with every cap set low: each cap reached
answers its status and the spec's Error body (503 at_capacity with Retry-After for the caps a client should
retry), and the agent is healthy after. A thousand idle or half-sent connections held open do not starve
/health, and the header timeout closes them (408 for those that sent half a head)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.sandbox import Sandbox
from harness.sandboxes import private_sandbox

pytestmark = pytest.mark.timeout(180)

MAX_STREAMS = 6
MAX_PROCESSES = 3
MAX_WATCHES = 2
MAX_LOG_STREAMS = 2
MAX_JSON_BODY = 1024 * 1024
HEADER_TIMEOUT_S = 4.0
# "Within N s" bounds, generous for a busy 2-core machine.
PROMPTLY_S = 10.0
CLOSED_WITHIN_S = HEADER_TIMEOUT_S + 20.0


@pytest.fixture(scope="module")
def lbox() -> Iterator[Sandbox]:
    with private_sandbox(
        "agent-limits-",
        sse_max_streams=MAX_STREAMS,
        process_max_alive=MAX_PROCESSES,
        fs_max_watches=MAX_WATCHES,
        logs_max_streams=MAX_LOG_STREAMS,
        max_json_body=MAX_JSON_BODY,
        http_header_timeout_s=HEADER_TIMEOUT_S,
        http_idle_timeout_s=HEADER_TIMEOUT_S,
    ) as box:
        yield box


@pytest.fixture
async def http(lbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=lbox.agent_url, timeout=aiohttp.ClientTimeout(total=60, sock_read=60)
    ) as session:
        yield session
        # Every cap given back: the agent is healthy and serves again.
        async with session.get("/health") as response:
            assert response.status == 200, await response.text()


def fs_dir(box: Sandbox) -> Path:
    directory = box.state_dir / "fs" / f"limits-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    return directory


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body = await response.read()
    assert response.status == status, (response.status, body[:300])
    assert response.content_type == "application/json", body[:300]
    error = json.loads(body)
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    return dict(error)


async def at_capacity(response: aiohttp.ClientResponse) -> None:
    error = await error_of(response, 503)
    assert error["code"] == "at_capacity", error
    assert int(response.headers["Retry-After"]) >= 1


async def eventually(open_one: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> aiohttp.ClientResponse:
    """Retry what a cap refused until a slot comes back (the server sees a client leave a moment later)."""
    async with asyncio.timeout(PROMPTLY_S):
        while True:
            response = await open_one()
            if response.status != 503:
                return response
            response.release()
            await asyncio.sleep(0.1)


# --- caps on what is held at once ---


async def test_the_stream_cap_covers_every_kind_of_stream(lbox: Sandbox, http: aiohttp.ClientSession) -> None:
    directory = fs_dir(lbox)
    log_file = directory / "app.log"
    log_file.write_text("one\n")
    async with http.post("/process/spawn", json={"command": "sleep", "args": ["60"]}) as response:
        assert response.status == 200, await response.text()
        process_id = (await response.json())["process_id"]
    async with http.post("/fs/watch", json={"path": str(directory), "recursive": False}) as response:
        assert response.status == 201, await response.text()
        watch_id = (await response.json())["watch_id"]
    kinds: dict[str, Callable[[], Awaitable[aiohttp.ClientResponse]]] = {
        "telemetry": lambda: http.get("/telemetry/stream"),
        "logs": lambda: http.get("/logs/stream", params={"source": "path", "path": str(log_file)}),
        "fs watch": lambda: http.get(f"/fs/watch/{watch_id}/events"),
        "process": lambda: http.get(f"/process/{process_id}/stdout/stream"),
    }
    held: list[aiohttp.ClientResponse] = []
    try:
        for opener in [*kinds.values(), *[kinds["telemetry"]] * (MAX_STREAMS - len(kinds))]:
            response = await opener()
            held.append(response)
            assert response.status == 200, await response.text()
        for name, opener in kinds.items():
            async with await opener() as response:
                await at_capacity(response)
            print(f"{name}: 503 at the cap of {MAX_STREAMS} streams")
        # One closed, one more may open.
        held.pop(0).close()
        response = await eventually(kinds["telemetry"])
        held.append(response)
        assert response.status == 200, await response.text()
    finally:
        for response in held:
            response.close()
        async with http.post(f"/process/{process_id}/kill", json={"signal": "KILL"}) as response:
            assert response.status == 200, await response.text()
        async with http.delete(f"/fs/watch/{watch_id}") as response:
            assert response.status == 204, await response.text()


async def test_the_process_cap_counts_spawned_and_exec_children(
    lbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    spawned: list[str] = []
    try:
        for _ in range(MAX_PROCESSES - 1):
            async with http.post("/process/spawn", json={"command": "sleep", "args": ["60"]}) as response:
                assert response.status == 200, await response.text()
                spawned.append((await response.json())["process_id"])
        # The last place is taken by an exec in flight (it says so with a file once it runs): then neither
        # spawn nor exec gets one.
        marker = fs_dir(lbox) / "exec-started"
        running_exec = asyncio.ensure_future(
            http.post("/process/exec", json={"command": "sh", "args": ["-c", f"touch {marker}; sleep 3"]})
        )
        async with asyncio.timeout(PROMPTLY_S):
            while True:
                if marker.exists():
                    break
                await asyncio.sleep(0.05)
        async with http.post("/process/spawn", json={"command": "true"}) as response:
            await at_capacity(response)
        async with http.post("/process/exec", json={"command": "true"}) as response:
            await at_capacity(response)
        async with await running_exec as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["exit_code"] == 0
        # The exec ended: its place is free again.
        async with http.post("/process/exec", json={"command": "echo", "args": ["ok"]}) as response:
            assert response.status == 200, await response.text()
        async with http.post("/process/spawn", json={"command": "sleep", "args": ["60"]}) as response:
            assert response.status == 200, await response.text()
            spawned.append((await response.json())["process_id"])
        async with http.post("/process/spawn", json={"command": "true"}) as response:
            await at_capacity(response)
        # A killed child gives its place back.
        async with http.post(f"/process/{spawned[0]}/kill", json={"signal": "KILL"}) as response:
            assert response.status == 200, await response.text()
        response = await eventually(lambda: http.post("/process/exec", json={"command": "true"}))
        assert response.status == 200, await response.text()
        response.release()
    finally:
        for process_id in spawned:
            async with http.post(f"/process/{process_id}/kill", json={"signal": "KILL"}) as response:
                await response.read()  # an exited one may answer an error: nothing to kill


async def test_the_watch_cap_is_a_400_and_a_stopped_watch_frees_its_place(
    lbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    directory = fs_dir(lbox)
    watches = []
    try:
        for _ in range(MAX_WATCHES):
            async with http.post("/fs/watch", json={"path": str(directory)}) as response:
                assert response.status == 201, await response.text()
                watches.append((await response.json())["watch_id"])
        async with http.post("/fs/watch", json={"path": str(directory)}) as response:
            assert "too many watches" in (await error_of(response, 400))["message"]
        async with http.delete(f"/fs/watch/{watches.pop()}") as response:
            assert response.status == 204
        async with http.post("/fs/watch", json={"path": str(directory)}) as response:
            assert response.status == 201, await response.text()
            watches.append((await response.json())["watch_id"])
    finally:
        for watch_id in watches:
            async with http.delete(f"/fs/watch/{watch_id}") as response:
                assert response.status == 204


async def test_the_log_stream_cap_is_a_400(lbox: Sandbox, http: aiohttp.ClientSession) -> None:
    log_file = fs_dir(lbox) / "app.log"
    log_file.write_text("one\n")
    params = {"source": "path", "path": str(log_file)}
    held = []
    try:
        for _ in range(MAX_LOG_STREAMS):
            response = await http.get("/logs/stream", params=params)
            held.append(response)
            assert response.status == 200, await response.text()
        async with http.get("/logs/stream", params=params) as response:
            assert "too many log streams" in (await error_of(response, 400))["message"]
    finally:
        for response in held:
            response.close()


async def test_request_sizes_are_per_route(lbox: Sandbox, http: aiohttp.ClientSession) -> None:
    # A JSON route: past max_json_body is 413, whether the length is declared or not.
    text = "x" * (MAX_JSON_BODY + 1)
    async with http.post("/computer/clipboard/write", json={"text": text}) as response:
        assert (await error_of(response, 413))["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:
        yield json.dumps({"text": text}).encode()

    async with http.post(
        "/computer/clipboard/write", data=chunked(), headers={"Content-Type": "application/json"}
    ) as response:
        assert (await error_of(response, 413))["code"] == "payload_too_large"
    # An upload route streams to disk: four times that cap is fine.
    target = fs_dir(lbox) / "big.bin"
    payload = b"y" * (4 * MAX_JSON_BODY)
    async with http.put("/fs/write_file", params={"path": str(target)}, data=payload) as response:
        assert response.status == 201, await response.text()
    assert target.stat().st_size == len(payload)


# --- connections held open ---


@contextlib.contextmanager
def fd_limit(at_least: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < at_least:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, at_least), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends before it closes the connection; fails if it is still open after the bound."""
    data = b""
    try:
        async with asyncio.timeout(CLOSED_WITHIN_S):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {CLOSED_WITHIN_S} s; got {data[:200]!r}") from None
    except ConnectionResetError:
        pass
    return data


async def test_a_thousand_idle_and_half_sent_connections_do_not_starve_health(
    lbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    port = lbox.config.port
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    with fd_limit(4096):
        try:
            for _ in range(10):  # in batches: the listen backlog is 128
                held += await asyncio.gather(
                    *(asyncio.open_connection("127.0.0.1", port) for _ in range(100))
                )
            # Half of them are slowloris: half a request head, then nothing.
            half = held[::2]
            for _, writer in half:
                writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
            await asyncio.gather(*(writer.drain() for _, writer in half))
            # While all thousand are held, /health answers, again and again.
            for _ in range(5):
                async with asyncio.timeout(PROMPTLY_S):
                    async with http.get("/health") as response:
                        assert response.status == 200, await response.text()
            # The header timeout closes every one of them: silently those that asked nothing, with a 408
            # and the spec's Error those that sent half a head.
            answers = await asyncio.gather(*(until_closed(reader) for reader, _ in held))
            for index, answer in enumerate(answers):
                if index % 2:
                    assert answer == b"", answer[:200]
                else:
                    head, _, body = answer.partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
                    assert json.loads(body)["code"] == "request_timeout"
        finally:
            for _, writer in held:
                writer.close()


async def test_an_idle_keep_alive_connection_is_closed(lbox: Sandbox) -> None:
    port = lbox.config.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROMPTLY_S)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        assert await until_closed(reader) == b""  # kept alive, then idle: closed without a word
    finally:
        writer.close()
