"""Reading multipart/form-data part by part, every malformation a 400 (shared by /fs and /extensions)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http import HttpProcessingError

from .errors import BadRequest

PART_CHUNK = 1024 * 1024
# What aiohttp's multipart reader raises on a malformed body: HttpProcessingError covers a bad part header
# (InvalidHeader), a part header line that is too long (LineTooLong) and too many part headers.
_MALFORMED = (ValueError, RuntimeError, AssertionError, HttpProcessingError)


def _malformed(exc: Exception, where: str = "") -> BadRequest:
    detail = exc.message if isinstance(exc, HttpProcessingError) and exc.message else str(exc)
    return BadRequest(f"malformed multipart body{where}: {detail}")


async def open_reader(request: web.Request) -> MultipartReader:
    """The body's part reader; a body that is not multipart is a 400 that says what to send."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(f"send multipart/form-data, got Content-Type {request.content_type!r}")
    try:
        return await request.multipart()
    except _MALFORMED as exc:
        raise _malformed(exc) from None


async def next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise BadRequest("nested multipart bodies are not supported")
    return part


async def part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    """The part's decoded bytes in chunks of at most PART_CHUNK, never the whole part in memory."""
    encoded = hdrs.CONTENT_TRANSFER_ENCODING in part.headers
    try:
        while chunk := await part.read_chunk(PART_CHUNK):
            yield part.decode(chunk) if encoded else chunk
    except _MALFORMED as exc:
        raise _malformed(exc, f" in part {part.name!r}") from None


async def part_text(part: BodyPartReader, max_bytes: int) -> str:
    """A text field, stripped; longer than max_bytes or not UTF-8 → 400."""
    data = bytearray()
    async for chunk in part_chunks(part):
        data += chunk
        if len(data) > max_bytes:
            raise BadRequest(f"form field {part.name!r} is too long")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise BadRequest(f"form field {part.name!r} is not UTF-8 text") from None
