"""The computer capability: XTest input on its own X connection and thread; the pointer's visibility."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..capability import CONFIG_KEY, Capability
from ..config import Config
from ..services import Services
from ..x11.input import CursorState
from . import COMPUTER_KEY, CURSOR_KEY, http
from .operations import OPERATIONS
from .service import ComputerService, input_thread


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    cursor = CursorState()
    x_input = input_thread(config.display, cursor)
    services.provide(CURSOR_KEY, cursor)
    services.provide(COMPUTER_KEY, ComputerService(x_input))
    try:
        yield
    finally:
        await x_input.close()


def health(services: Services) -> Mapping[str, Any]:
    config = services.get(CONFIG_KEY)
    return {"display": {"available": True, "detail": f"{config.display} {config.screen}"}}


CAPABILITY = Capability(
    name="computer",
    provides=(COMPUTER_KEY, CURSOR_KEY),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
    health=health,
)
