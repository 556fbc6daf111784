"""The logs service without the sandbox: typed requests, line splitting, the stream cap, watch bookkeeping."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import Config
from agent.errors import BadRequest
from agent.logs.models import LogsStreamRequest
from agent.logs.service import LineSplitter, LogsService, decode
from agent.operation import Operations, build, json_name
from agent.services import Services
from agent.spec import Spec

SPEC = Spec.load()


def test_the_typed_request_gets_the_spec_default_and_names_every_parameter() -> None:
    args = Operations(SPEC, Services(), []).validate("logsStream", {"source": "path", "path": "/var/log/x"})
    req = build(LogsStreamRequest, args)
    assert req == LogsStreamRequest(source="path", follow=True, path="/var/log/x", supervisor_process=None)
    spec_op = next(op for op in SPEC.operations.values() if op.operation_id == "logsStream")
    assert {json_name(f) for f in dataclasses.fields(LogsStreamRequest)} == {
        p.name for p in spec_op.parameters
    }


def test_lines_are_split_at_the_limit_on_a_character_boundary() -> None:
    splitter = LineSplitter(8)
    text = "aé" * 6  # 18 bytes; byte 8 is the middle of an é
    pieces = splitter.feed(text.encode() + b"\n")
    assert all(len(p) <= 8 for p in pieces)
    assert "".join(decode(p) for p in pieces) == text
    assert "\ufffd" not in "".join(decode(p) for p in pieces)
    assert splitter.feed(b"12345678\n") == [b"12345678"]  # exactly the limit: one line
    assert splitter.feed(b"abc") == [] and splitter.pending
    assert splitter.feed(b"\r\n") == [b"abc"]
    assert splitter.flush() is None


def test_invalid_utf8_is_replaced() -> None:
    assert decode(b"\xc3(\xff ok") == "\ufffd(\ufffd ok"


@contextlib.asynccontextmanager
async def service(**overrides: object) -> AsyncIterator[LogsService]:
    logs = LogsService(dataclasses.replace(Config(), **overrides))  # type: ignore[arg-type]
    logs.start()
    try:
        yield logs
    finally:
        await logs.close()


async def test_streams_are_capped_and_a_closed_one_gives_its_slot_and_watches_back(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    req = LogsStreamRequest(source="path", follow=True, path=str(log))
    async with service(logs_max_streams=2) as logs:
        first, second = await logs.open(req), await logs.open(req)
        with pytest.raises(BadRequest, match="too many log streams"):
            await logs.open(req)
        first.close()
        third = await logs.open(req)
        for stream in (second, third):
            stream.close()
        assert logs.streams == 0
        assert logs.inotify is not None and not logs.inotify._refs and not logs.inotify._subs


async def test_a_stream_cancelled_mid_read_closes_its_file(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_bytes(b"line\n" * 200_000)
    async with service() as logs:
        opened = await logs.open(LogsStreamRequest(source="path", follow=False, path=str(log)))
        fd = opened.fd
        events = opened.events()
        await anext(events)
        reader = asyncio.get_running_loop().create_task(anext(events))
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await reader
        await events.aclose()
        for _ in range(100):
            if opened.fd == -1:
                break
            await asyncio.sleep(0.01)
        assert opened.fd == -1
        assert not _open_as(fd, log)


def _open_as(fd: int, path: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == str(path)
    except FileNotFoundError:
        return False
