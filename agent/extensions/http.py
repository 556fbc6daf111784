"""POST /extensions: the multipart body as the SDK sends it → the typed request → the install.

The SDK sends `extensions[][name]` for every entry, then `extensions[][zip_file]` for every entry; the n-th
name goes with the n-th archive. The names are checked against the spec's schema before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http import HttpProcessingError

from ..config import Config
from ..errors import BadRequest
from ..operation import services_of, spec_of
from ..spec import check
from . import EXTENSIONS_KEY
from . import operations as ops
from .models import ExtensionUpload, UploadExtensionsRequest

PATH = "/extensions"
PART_CHUNK = 1024 * 1024
MAX_NAME_BYTES = 4096
_FIELD = re.compile(r"^extensions\[\]\[(name|zip_file)\]$")
_EXPECTED = "expected extensions[][name] and extensions[][zip_file]"
# What aiohttp's multipart reader raises on a malformed body.
_MALFORMED = (ValueError, RuntimeError, AssertionError, HttpProcessingError)


def _malformed(exc: Exception) -> BadRequest:
    detail = exc.message if isinstance(exc, HttpProcessingError) and exc.message else str(exc)
    return BadRequest(f"malformed multipart body: {detail}")


async def _next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest("nested multipart bodies are not supported")
    return part


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    encoded = hdrs.CONTENT_TRANSFER_ENCODING in part.headers
    try:
        while chunk := await part.read_chunk(PART_CHUNK):
            yield part.decode(chunk) if encoded else chunk
    except _MALFORMED as exc:
        raise _malformed(exc) from None


async def _text(part: BodyPartReader) -> str:
    data = bytearray()
    async for chunk in _chunks(part):
        data += chunk
        if len(data) > MAX_NAME_BYTES:
            raise BadRequest(f"form field {part.name!r} is too long")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest(f"form field {part.name!r} is not UTF-8 text") from None


def _check_names(request: web.Request, names: list[str], files: int) -> None:
    if len(names) != files:
        raise BadRequest(
            f"every extension needs a name and a zip_file: got {len(names)} extensions[][name] "
            f"and {files} extensions[][zip_file]"
        )
    spec = spec_of(request)
    body = spec.document["paths"][PATH]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    instance: dict[str, Any] = {"extensions": [{"name": n, "zip_file": ""} for n in names]} if names else {}
    check(spec.validator(body), instance)


async def upload_extensions(request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(f"send multipart/form-data, got Content-Type {request.content_type!r}")
    service = services_of(request).get(EXTENSIONS_KEY)
    try:
        reader = await request.multipart()
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    names: list[str] = []
    files: list[BinaryIO] = []
    budget = service.limits.max_bytes
    handed_over = False
    try:
        while (part := await _next_part(reader)) is not None:
            match = _FIELD.match(part.name or "")
            if match is None:
                raise BadRequest(f"unexpected form field {part.name!r} ({_EXPECTED})")
            if match.group(1) == "name":
                names.append(await _text(part))
            else:
                spool, size = await service.spool(_chunks(part), budget)
                files.append(spool)
                budget -= size
        _check_names(request, names, len(files))
        req = UploadExtensionsRequest(tuple(ExtensionUpload(n, f) for n, f in zip(names, files, strict=True)))
        handed_over = True  # the service closes the files from here on
        await ops.UPLOAD.run(services_of(request), req)
    finally:
        if not handed_over:
            for file in files:
                with contextlib.suppress(OSError):
                    await asyncio.shield(asyncio.to_thread(file.close))
    return web.Response(status=ops.UPLOAD.status)


def routes(config: Config) -> list[web.RouteDef]:
    return [web.post(PATH, upload_extensions)]
