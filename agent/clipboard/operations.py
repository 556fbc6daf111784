"""The clipboard operations, transport-independent."""

from __future__ import annotations

from typing import Any

from ..operation import Operation
from ..services import Services
from . import CLIPBOARD_KEY
from .models import ClipboardText, ReadClipboardRequest, WriteClipboardRequest


async def _read(services: Services, req: ReadClipboardRequest) -> ClipboardText:
    return ClipboardText(await services.get(CLIPBOARD_KEY).read())


async def _write(services: Services, req: WriteClipboardRequest) -> None:
    await services.get(CLIPBOARD_KEY).write(req.text)


READ = Operation("readClipboard", ReadClipboardRequest, _read)
WRITE = Operation("writeClipboard", WriteClipboardRequest, _write)
OPERATIONS: tuple[Operation[Any], ...] = (READ, WRITE)
