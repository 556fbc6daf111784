"""POST /extensions: the multipart body as the SDK sends it → the typed request → the install.

The SDK sends `extensions[][name]` for every entry, then `extensions[][zip_file]` for every entry; the n-th
name goes with the n-th archive. The names are checked against the spec's schema before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, BinaryIO

from aiohttp import web

from ..config import Config
from ..errors import BadRequest
from ..multipart import next_part, open_reader, part_chunks, part_text
from ..operation import services_of, spec_of
from ..spec import check
from . import EXTENSIONS_KEY
from . import operations as ops
from .models import ExtensionUpload, UploadExtensionsRequest

PATH = "/extensions"
MAX_NAME_BYTES = 4096
_FIELD = re.compile(r"^extensions\[\]\[(name|zip_file)\]$")
_EXPECTED = "expected extensions[][name] and extensions[][zip_file]"


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
    service = services_of(request).get(EXTENSIONS_KEY)
    reader = await open_reader(request)
    names: list[str] = []
    files: list[BinaryIO] = []
    budget = service.limits.max_bytes
    handed_over = False
    try:
        while (part := await next_part(reader)) is not None:
            match = _FIELD.match(part.name or "")
            if match is None:
                raise BadRequest(f"unexpected form field {part.name!r} ({_EXPECTED})")
            if match.group(1) == "name":
                names.append(await part_text(part, MAX_NAME_BYTES))
            else:
                spool, size = await service.spool(part_chunks(part), budget)
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
