"""GET /logs/stream against the real sandbox: files followed like `tail -F`, read once, supervisord logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from agent.sandbox import Sandbox
from agent.spec import check
from tests.agent.fs.conftest import EventStream, agent_pid, event_stream
from tests.agent.logs.conftest import ERROR, messages, stream_url
from tests.conftest import AgentClient


def appended(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


async def ended(reader: EventStream, timeout: float = 10.0) -> list[str]:
    await asyncio.wait_for(reader.ended.wait(), timeout)
    return messages(reader.events)


def has_message(text: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: text in [e["message"] for e in events]


async def test_a_line_appended_to_a_file_arrives(
    sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path
) -> None:
    log = workdir / "app.log"
    log.write_bytes(b"written before the stream\n")
    async with event_stream(http, stream_url(sandbox, source="path", path=log)) as reader:
        assert reader.response.headers["X-SSE-Content-Type"] == "application/json"
        appended(log, b"first new line\nsecond new line\n")
        await reader.wait_for(has_message("second new line"))
        # follow starts at the end: what the file held before is not sent
        assert messages(reader.events) == ["first new line", "second new line"]


async def test_follow_false_sends_what_the_file_holds_and_ends(
    sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path
) -> None:
    log = workdir / "done.log"
    log.write_bytes(b"one\r\n\ntwo\nno newline at the end")
    async with event_stream(http, stream_url(sandbox, source="path", path=log, follow=False)) as reader:
        assert await ended(reader) == ["one", "", "two", "no newline at the end"]


async def test_truncation_is_followed(sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path) -> None:
    log = workdir / "trunc.log"
    log.write_bytes(b"a long line that was there before the stream started\n")
    async with event_stream(http, stream_url(sandbox, source="path", path=log)) as reader:
        appended(log, b"before truncation, also long enough\n")
        await reader.wait_for(has_message("before truncation, also long enough"))
        with log.open("r+b") as out:  # what logrotate's copytruncate does
            out.truncate(0)
        appended(log, b"after\n")  # shorter than what was read: read from the new start
        await reader.wait_for(has_message("after"))
        assert messages(reader.events) == ["before truncation, also long enough", "after"]


async def test_rotation_is_followed(sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path) -> None:
    log = workdir / "rot.log"
    writer = log.open("ab", buffering=0)
    try:
        async with event_stream(http, stream_url(sandbox, source="path", path=log)) as reader:
            writer.write(b"in the first file\n")
            await reader.wait_for(has_message("in the first file"))
            os.rename(log, workdir / "rot.log.1")
            # The program has not reopened its log yet: what it still writes to the old file is sent too.
            writer.write(b"late in the first file\n")
            await reader.wait_for(has_message("late in the first file"))
            writer.close()
            writer = log.open("ab", buffering=0)
            writer.write(b"in the second file\n")
            await reader.wait_for(has_message("in the second file"))
            # Deleted and created again (rotation by delete), and the stream is still there.
            writer.close()
            log.unlink()
            writer = log.open("ab", buffering=0)
            writer.write(b"in the third file\n")
            await reader.wait_for(has_message("in the third file"))
            assert messages(reader.events) == [
                "in the first file",
                "late in the first file",
                "in the second file",
                "in the third file",
            ]
    finally:
        writer.close()


async def test_invalid_utf8_is_replaced_and_long_lines_are_split(
    sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path
) -> None:
    log = workdir / "odd.log"
    log.write_bytes(b"bad \xff\xfe bytes\n" + b"x" * (2 * 65536 + 10) + b"\nafter\n")
    async with event_stream(http, stream_url(sandbox, source="path", path=log, follow=False)) as reader:
        got = await ended(reader)
    assert got == ["bad \ufffd\ufffd bytes", "x" * 65536, "x" * 65536, "x" * 10, "after"]


async def test_a_partial_line_is_sent_once_the_file_is_quiet(
    sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path
) -> None:
    log = workdir / "prompt.log"
    log.touch()
    async with event_stream(http, stream_url(sandbox, source="path", path=log)) as reader:
        appended(log, b"Password: ")
        await reader.wait_for(has_message("Password: "))
        appended(log, b"rest\n")
        await reader.wait_for(has_message("rest"))


@pytest.mark.parametrize("program", ["chromium", "xvfb", "agent"])
async def test_supervisor_program_logs_stream(
    sandbox: Sandbox, http: aiohttp.ClientSession, program: str
) -> None:
    url = stream_url(sandbox, source="supervisor", supervisor_process=program, follow=False)
    async with event_stream(http, url) as reader:
        got = await ended(reader)
    lines = (sandbox.state_dir / "logs" / f"{program}.log").read_bytes().decode(errors="replace").split("\n")
    assert got == lines[: len(got)]  # the file may have grown since
    if program == "chromium":
        assert got, "Chromium's log has its start-up lines"


async def test_a_supervisor_log_is_followed(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    url = stream_url(sandbox, source="supervisor", supervisor_process="chromium")
    async with event_stream(http, url) as reader:
        # Chromium writes its log when it likes; a line appended to the file supervisord writes stands in.
        appended(sandbox.state_dir / "logs" / "chromium.log", b"line for the log stream test\n")
        await reader.wait_for(has_message("line for the log stream test"))


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"source": "path"}, 400, "path is required"),
        ({"source": "supervisor"}, 400, "supervisor_process is required"),
        ({"source": "supervisor", "path": "/x"}, 400, "supervisor_process is required"),
        ({"source": "file", "path": "/x"}, 400, "source"),
        ({}, 400, "source"),
        ({"source": "path", "path": "relative.log"}, 400, "absolute"),
        ({"source": "supervisor", "supervisor_process": "no-such-program"}, 404, "no-such-program"),
    ],
)
async def test_request_errors(agent: AgentClient, params: dict[str, str], status: int, says: str) -> None:
    reply = await agent.get("/logs/stream", params=params)
    assert reply.status == status, reply
    check(ERROR, reply.json())
    assert says in reply.json()["message"]


async def test_missing_files_directories_and_paths_outside_the_root(
    agent: AgentClient, sandbox: Sandbox, workdir: Path
) -> None:
    missing = await agent.get("/logs/stream", params={"source": "path", "path": str(workdir / "nope.log")})
    assert missing.status == 404, missing
    directory = await agent.get("/logs/stream", params={"source": "path", "path": str(workdir)})
    assert directory.status == 400, directory
    assert "directory" in directory.json()["message"]
    outside = str(sandbox.state_dir / "logs" / "agent.log")  # exists, but outside the fs root
    refused = await agent.get("/logs/stream", params={"source": "path", "path": outside})
    assert refused.status == 403, refused
    link = workdir / "link.log"
    link.symlink_to(outside)
    assert (await agent.get("/logs/stream", params={"source": "path", "path": str(link)})).status == 403
    for reply in (missing, directory, refused):
        check(ERROR, reply.json())


async def test_idle_streams_do_not_poll_and_closed_ones_leave_no_fd(
    sandbox: Sandbox, http: aiohttp.ClientSession, workdir: Path
) -> None:
    agent = psutil.Process(agent_pid(sandbox))
    logs = [workdir / f"idle-{i}.log" for i in range(10)]
    for log in logs:
        log.write_bytes(b"")
    fds_before = agent.num_fds()
    async with contextlib.AsyncExitStack() as streams:
        urls = [stream_url(sandbox, source="path", path=log) for log in logs]
        readers = [await streams.enter_async_context(event_stream(http, url)) for url in urls]
        before = agent.cpu_times()
        await asyncio.sleep(3.0)
        after = agent.cpu_times()
        used = (after.user + after.system) - (before.user + before.system)
        # A busy loop would burn most of a core; ten idle followers cost next to nothing.
        assert used < 0.5, f"the agent used {used:.2f} s of CPU in 3 s with ten idle log streams"
        appended(logs[-1], b"still awake\n")
        await readers[-1].wait_for(has_message("still awake"))
    for _ in range(100):  # the agent notices the disconnects and closes the files
        if agent.num_fds() <= fds_before:
            break
        await asyncio.sleep(0.05)
    assert agent.num_fds() <= fds_before
