"""Routes under /process: thin adapters over the process operations; the SSE stream, the attach WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from .. import sse
from ..config import Config
from ..errors import AgentError, BadRequest
from ..operation import json_route, services_of, typed_request
from . import PROCESS_KEY
from . import operations as ops
from .models import (
    ExecResult,
    ExitEvent,
    OutputChunk,
    ProcessAttachRequest,
    ProcessRef,
    chunk_event,
    exit_event,
)
from .service import ManagedProcess, ProcessService

# Results larger than this are base64- and JSON-encoded in a thread, off the event loop.
_ENCODE_INLINE_MAX = 256 * 1024


def _service(request: web.Request) -> ProcessService:
    return services_of(request).get(PROCESS_KEY)


async def process_exec(request: web.Request) -> web.Response:
    """The exec operation, with its (possibly large) result encoded off the loop."""
    result: ExecResult = await ops.EXEC.run(services_of(request), typed_request(request, ops.EXEC.request))
    if len(result.stdout) + len(result.stderr) > _ENCODE_INLINE_MAX:
        body = await asyncio.to_thread(result.encode)
    else:
        body = result.encode()
    return web.Response(body=body, content_type="application/json")


async def process_stdout_stream(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    managed = service.get(typed_request(request, ProcessRef).process_id)
    after = sse.last_event_id(request)

    async def events() -> AsyncIterator[tuple[int | None, dict[str, Any]]]:
        async with contextlib.aclosing(service.batches(managed, after)) as batches:
            async for seq, item in batches:
                if isinstance(item, OutputChunk):
                    yield seq, chunk_event(item.stream, item.data)
                else:
                    yield seq, exit_event(item)

    return await sse.stream(request, events())


# --- GET /process/{id}/attach: a terminal over a WebSocket (extension) ---------------------------------


async def process_attach(request: web.Request) -> web.StreamResponse:
    req = typed_request(request, ProcessAttachRequest)
    service = _service(request)
    managed = service.get(req.process_id)
    if managed.tty is None:
        raise BadRequest(
            f"process {managed.id} has no PTY (spawn it with allocate_tty: true); "
            "read its output from /process/{process_id}/stdout/stream"
        )
    ws = web.WebSocketResponse(max_msg_size=service.config.max_json_body, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        raise BadRequest(
            "this route upgrades to a WebSocket: send a WebSocket handshake (Upgrade: websocket)"
        )
    await ws.prepare(request)
    after = 0 if req.replay else managed.buffer.last_seq
    output = service.tasks.spawn(_send_output(ws, service, managed, after), name=f"attach-{managed.id[:8]}")
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await _terminal_input(ws, service, managed, message.data)
            elif message.type == WSMsgType.TEXT:
                control = _control_message(message.data)
                if control is None:
                    await _terminal_input(ws, service, managed, message.data.encode())
                elif isinstance(control, str):
                    await _send_error(ws, control)
                else:
                    try:
                        service.resize(managed, *control)
                    except AgentError as exc:
                        await _send_error(ws, exc.message)
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        output.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await output
    return ws


def _control_message(text: str) -> tuple[int, int] | str | None:
    """A resize control message as (rows, cols), an error message for a bad one, None for terminal input."""
    if not text.startswith("{"):
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or "type" not in message:
        return None
    if message["type"] != "resize":
        return f"unknown control message type {message['type']!r} (known: resize)"
    rows, cols = message.get("rows"), message.get("cols")
    if not (_dimension(rows) and _dimension(cols)):
        return "resize needs integer rows and cols between 1 and 65535"
    assert isinstance(rows, int) and isinstance(cols, int)
    return rows, cols


def _dimension(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


async def _terminal_input(
    ws: web.WebSocketResponse, service: ProcessService, managed: ManagedProcess, data: bytes
) -> None:
    try:
        written = await service.write_stdin(managed, data)
    except AgentError as exc:
        await _send_error(ws, exc.message)
        return
    if written < len(data):
        await _send_error(
            ws, f"the terminal did not take input for a while: {len(data) - written} bytes dropped"
        )


async def _send_error(ws: web.WebSocketResponse, message: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps({"type": "error", "message": message}))


async def _send_output(
    ws: web.WebSocketResponse, service: ProcessService, managed: ManagedProcess, after: int
) -> None:
    try:
        async with contextlib.aclosing(service.batches(managed, after)) as batches:
            async for _, item in batches:
                if isinstance(item, OutputChunk):
                    await ws.send_bytes(item.data)
                elif isinstance(item, ExitEvent):
                    await ws.send_str(json.dumps(_exit_message(item)))
        await ws.close()
    except (ConnectionError, RuntimeError):
        pass  # the client went away


def _exit_message(event: ExitEvent) -> dict[str, Any]:
    # exitCode too: the reference server's attach protocol spells it that way.
    code = event.exit_code
    return {"type": "exit", "exit_code": code, "exitCode": code, "timed_out": event.timed_out}


# --- wiring ----------------------------------------------------------------------------------------------


def routes(config: Config) -> list[web.RouteDef]:
    return [
        web.post("/process/exec", process_exec),
        json_route("POST", "/process/spawn", ops.SPAWN),
        json_route("GET", "/process/{process_id}/status", ops.STATUS),
        web.get("/process/{process_id}/stdout/stream", process_stdout_stream, allow_head=False),
        json_route("POST", "/process/{process_id}/stdin", ops.STDIN),
        json_route("POST", "/process/{process_id}/kill", ops.KILL),
        json_route("POST", "/process/{process_id}/resize", ops.RESIZE),
        web.get("/process/{process_id}/attach", process_attach, allow_head=False),
    ]
