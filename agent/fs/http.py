"""Routes under /fs: thin adapters over the fs operations; raw, multipart, zip and SSE transports here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading

from aiohttp import hdrs, web
from aiohttp.helpers import content_disposition_header

from ..config import Config
from ..errors import AgentError, BadRequest
from ..multipart import next_part, open_reader, part_chunks, part_text
from ..operation import json_route, services_of, typed_request
from ..sse import last_event_id, stream
from . import FS_KEY
from . import operations as ops
from .atomic import SocketBody
from .compat import detach_body, end_detached_body
from .models import FsPath, WatchRef, WriteFileRequest, display_name
from .service import FsService, OpenedFile

log = logging.getLogger(__name__)

MAX_FIELD_BYTES = 64 * 1024
_INDEXED = re.compile(r"^files(?:\[(\d*)\](?:\[(\w+)\]|\.(\w+))|\.(\d+)\.(\w+))$")


def _service(request: web.Request) -> FsService:
    return services_of(request).get(FS_KEY)


# --- reading ---


async def _send_file(request: web.Request, response: web.StreamResponse, opened: OpenedFile) -> None:
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    try:
        # Zero copy: the kernel moves page-cache pages to the socket; the event loop only waits.
        await asyncio.get_running_loop().sendfile(transport, opened.file, 0, opened.size, fallback=False)
    except (NotImplementedError, RuntimeError):
        async for chunk in _service(request).read_chunks(opened, 0, opened.size):
            await response.write(chunk)


async def read_file(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    opened = await service.open_file(typed_request(request, FsPath).path)
    try:
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
        response.content_length = opened.size
        response.last_modified = opened.mtime
        await response.prepare(request)
        try:
            if opened.size:
                await _send_file(request, response, opened)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away half-way: nothing more to send
        return response
    finally:
        await service.close_file(opened)


async def download_dir_zip(request: web.Request) -> web.StreamResponse:
    path = typed_request(request, FsPath).path
    chunks = await _service(request).zip_directory(path)
    try:
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_TYPE: "application/zip",
                hdrs.CONTENT_DISPOSITION: content_disposition_header(
                    "attachment", filename=f"{display_name(path).strip('/') or 'root'}.zip"
                ),
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except (ConnectionResetError, ConnectionError):
            return response  # the client went away
        except Exception:
            # The status is sent already: cut the connection so the client sees a truncated transfer,
            # never a zip that looks complete.
            log.exception("zip of %s failed half-way; closing the connection", path)
            if request.transport is not None:
                request.transport.abort()
            return response
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response
    finally:
        await chunks.aclose()


# --- writing ---


# Bodies at least this big go from the socket into the file by splice(2): no copy through Python.
SPLICE_MIN_BYTES = 1024 * 1024


def _socket_body(request: web.Request) -> SocketBody | None:
    """Take the rest of a large, plain (Content-Length, no TLS) body straight from the socket.

    The server's HTTP parser never sees those bytes, so this connection serves no further request: it is
    closed after the response (the client opens a new one)."""
    length = request.content_length
    transport = request.transport
    if length is None or length < SPLICE_MIN_BYTES or hdrs.TRANSFER_ENCODING in request.headers:
        return None
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    prefix = detach_body(request)
    return SocketBody(prefix, sock.fileno(), length, threading.Event(), _service(request).body_timeout_s)


async def write_file(request: web.Request) -> web.Response:
    service = _service(request)
    req = typed_request(request, WriteFileRequest)
    path, mode = req.path, req.mode
    body = None
    if (request.content_length or 0) >= SPLICE_MIN_BYTES:
        # A bad path or mode is answered before the body is taken over, so the client reads its 4xx.
        await service.check_write_target(path, mode)
        body = _socket_body(request)
    if body is None:
        await service.write_file(path, mode, request.content.iter_any())
        return web.Response(status=201)
    try:
        await service.write_file(path, mode, body)
        response = web.Response(status=201)
    except AgentError as exc:
        response = web.json_response(exc.body(), status=exc.status)
    finally:
        end_detached_body(request)
    response.force_close()  # `Connection: close`: the socket's bytes went around the HTTP parser
    return response


class _Indexes:
    """files[i][field] → (i, field); `files[][field]` (no index): n-th dest_path with n-th file."""

    def __init__(self) -> None:
        self._unindexed: dict[str, int] = {}
        self._kinds: set[bool] = set()

    def parse(self, name: str | None) -> tuple[int, str]:
        if name in ("file", "dest_path"):  # single-file shorthand, as the reference service accepts
            return 0, name
        match = _INDEXED.match(name or "")
        if match is None:
            raise BadRequest(
                f"unexpected form field {name!r} (expected files[<i>][dest_path], files[<i>][file])"
            )
        raw_index = match.group(1) if match.group(4) is None else match.group(4)
        field = match.group(2) or match.group(3) or match.group(5)
        if field not in ("file", "dest_path"):
            raise BadRequest(
                f"unexpected form field {name!r} (expected files[<i>][dest_path], files[<i>][file])"
            )
        self._kinds.add(raw_index == "")
        if len(self._kinds) > 1:
            raise BadRequest("form mixes files[<i>][…] and files[][…] fields")
        if raw_index == "":
            index = self._unindexed.get(field, 0)
            self._unindexed[field] = index + 1
            return index, field
        return int(raw_index), field


async def upload(request: web.Request) -> web.Response:
    reader = await open_reader(request)
    batch = _service(request).upload()
    indexes = _Indexes()
    try:
        while (part := await next_part(reader)) is not None:
            index, field = indexes.parse(part.name)
            if field == "dest_path":
                await batch.dest(index, await part_text(part, MAX_FIELD_BYTES))
            else:
                await batch.file(index, part_chunks(part))
        await batch.commit()
    finally:
        await batch.discard()
    return web.Response(status=201)


async def upload_zip(request: web.Request) -> web.Response:
    service = _service(request)
    reader = await open_reader(request)
    dest_path: str | None = None
    spool = None
    try:
        while (part := await next_part(reader)) is not None:
            if part.name == "dest_path":
                if dest_path is not None:
                    raise BadRequest("dest_path given twice")
                dest_path = await part_text(part, MAX_FIELD_BYTES)
                if not dest_path.startswith("/"):
                    raise BadRequest(f"dest_path must be absolute, got {dest_path!r}")
            elif part.name == "zip_file":
                if spool is not None:
                    raise BadRequest("zip_file given twice")
                spool = await service.spool_zip(part_chunks(part), dest_path)
            else:
                raise BadRequest(f"unexpected form field {part.name!r} (expected dest_path and zip_file)")
        if dest_path is None or spool is None:
            raise BadRequest("missing form field: " + ("dest_path" if dest_path is None else "zip_file"))
        await service.upload_zip(dest_path, spool)
    finally:
        if spool is not None:
            await service.close_spool(spool)
    return web.Response(status=201)


# --- watches ---


async def watch_events(request: web.Request) -> web.StreamResponse:
    watches = _service(request).watches
    watch = watches.get(typed_request(request, WatchRef).watch_id)
    # Without Last-Event-ID a client gets every event still buffered: what happened between starting the
    # watch and opening the stream is not lost.
    return await stream(request, watches.events(watch, last_event_id(request)))


def routes(config: Config) -> list[web.RouteDef]:
    return [
        web.get("/fs/read_file", read_file, allow_head=False),
        web.put("/fs/write_file", write_file),
        json_route("GET", "/fs/list_files", ops.LIST_FILES),
        json_route("GET", "/fs/file_info", ops.FILE_INFO),
        json_route("PUT", "/fs/create_directory", ops.CREATE_DIRECTORY),
        json_route("PUT", "/fs/delete_file", ops.DELETE_FILE),
        json_route("PUT", "/fs/delete_directory", ops.DELETE_DIRECTORY),
        json_route("PUT", "/fs/set_file_permissions", ops.SET_FILE_PERMISSIONS),
        json_route("PUT", "/fs/move", ops.MOVE),
        json_route("POST", "/fs/watch", ops.START_WATCH),
        web.get("/fs/watch/{watch_id}/events", watch_events, allow_head=False),
        json_route("DELETE", "/fs/watch/{watch_id}", ops.STOP_WATCH),
        web.post("/fs/upload", upload),
        web.post("/fs/upload_zip", upload_zip),
        web.get("/fs/download_dir_zip", download_dir_zip, allow_head=False),
    ]
