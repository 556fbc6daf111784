"""The clipboard capability: an in-process CLIPBOARD owner/reader thread with its own X connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..config import Config
from ..services import Services
from ..x11.selection import SelectionThread
from . import CLIPBOARD_KEY, http
from .operations import OPERATIONS
from .service import ClipboardService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    selection = SelectionThread(config.display)
    selection.start()
    services.provide(CLIPBOARD_KEY, ClipboardService(selection))
    try:
        yield
    finally:
        await selection.stop()


CAPABILITY = Capability(
    name="clipboard",
    provides=(CLIPBOARD_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
)
