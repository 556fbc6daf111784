"""The official Python SDK (PyPI `kernel`) drives every /process route through a prefix-stripping proxy."""

from __future__ import annotations

import base64

import kernel
import pytest

from agent.sandbox import Sandbox
from tests.helpers.sdk import SESSION_ID, sdk_client


async def test_sdk_drives_every_process_route(sandbox: Sandbox) -> None:
    client, transport = sdk_client(sandbox.agent_url)
    process = client.browsers.process
    sid = SESSION_ID
    async with client:
        result = await process.exec(sid, command="echo sdk-$((40+2)); echo e >&2; exit 2", cwd=None)
        assert result.exit_code == 2
        assert base64.b64decode(result.stdout_b64 or "") == b"sdk-42\n"
        assert base64.b64decode(result.stderr_b64 or "") == b"e\n"
        assert result.duration_ms is not None and result.duration_ms >= 0
        direct = await process.exec(sid, command="printf", args=["%s", "a b"], env={"X": "1"}, timeout_sec=10)
        assert base64.b64decode(direct.stdout_b64 or "") == b"a b"

        # a pipe-backed shell: stdin, the stream, kill
        spawned = await process.spawn(sid, command="sh", as_root=True)
        assert spawned.process_id and spawned.pid and spawned.started_at is not None
        written = await process.stdin(
            spawned.process_id, id_or_name=sid, data_b64=base64.b64encode(b"echo via-sdk\n").decode()
        )
        assert written.written_bytes == len(b"echo via-sdk\n")
        status = await process.status(spawned.process_id, id_or_name=sid)
        assert status.state == "running"
        stream = await process.stdout_stream(spawned.process_id, id_or_name=sid)
        output = b""
        exit_code = None
        async for event in stream:
            if event.data_b64:
                output += base64.b64decode(event.data_b64)
                if b"via-sdk\n" in output:
                    killed = await process.kill(spawned.process_id, id_or_name=sid, signal="TERM")
                    assert killed.ok is True
            if event.event == "exit":
                exit_code = event.exit_code
        assert output == b"via-sdk\n"
        assert exit_code == 143
        status = await process.status(spawned.process_id, id_or_name=sid)
        assert (status.state, status.exit_code) == ("exited", 143)

        # a PTY: size, resize
        tty = await process.spawn(
            sid, command="trap 'stty size' WINCH; stty size; while :; do sleep 0.05; done",
            allocate_tty=True, rows=12, cols=34,
        )  # fmt: skip
        assert tty.process_id is not None
        stream = await process.stdout_stream(tty.process_id, id_or_name=sid)
        output = b""
        async for event in stream:
            output += base64.b64decode(event.data_b64 or "")
            if output == b"12 34\r\n":
                resized = await process.resize(tty.process_id, id_or_name=sid, rows=56, cols=78)
                assert resized.ok is True
            if b"56 78" in output:
                await process.kill(tty.process_id, id_or_name=sid, signal="KILL")
        assert output == b"12 34\r\n56 78\r\n"

        with pytest.raises(kernel.NotFoundError):
            await process.status("00000000-0000-4000-8000-000000000000", id_or_name=sid)
        with pytest.raises(kernel.BadRequestError) as caught:
            await process.resize(spawned.process_id, id_or_name=sid, rows=1, cols=1)
        assert "no PTY" in str(caught.value)

    routes = {(method, path.split("/")[-1] if "-" in path else path) for method, path, _ in transport.seen}
    assert {
        ("POST", "/process/exec"),
        ("POST", "/process/spawn"),
        ("POST", "stdin"),
        ("GET", "status"),
        ("GET", "stream"),
        ("POST", "kill"),
        ("POST", "resize"),
    } <= routes
