"""The logs capability: one shared inotify instance and a small reader pool for every log stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..config import Config
from ..services import Services
from . import LOGS_KEY, http
from .operations import OPERATIONS
from .service import LogsService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = LogsService(config)
    service.start()
    services.provide(LOGS_KEY, service)
    try:
        yield
    finally:
        await service.close()


CAPABILITY = Capability(
    name="logs", provides=(LOGS_KEY,), lifecycle=lifecycle, routes=http.routes, operations=OPERATIONS
)
