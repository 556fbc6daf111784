"""The screenshot capability: grabbers on worker threads; draws the pointer unless computer hid it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..computer import CURSOR_KEY
from ..config import Config
from ..services import Services
from . import SCREENSHOT_KEY, http
from .service import ScreenshotService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    cursor = services.get(CURSOR_KEY)
    screenshots = ScreenshotService(config.display, cursor_visible=lambda: not cursor.hidden)
    services.provide(SCREENSHOT_KEY, screenshots)
    try:
        yield
    finally:
        await screenshots.close()


CAPABILITY = Capability(
    name="screenshot",
    provides=(SCREENSHOT_KEY,),
    requires=(CURSOR_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
)
