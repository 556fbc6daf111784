"""The fs capability: files, listings, uploads, zips and watches, over two owned thread pools."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..config import Config
from ..services import Services
from . import FS_KEY, http
from .operations import OPERATIONS
from .service import FsService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = FsService(config)
    services.provide(FS_KEY, service)
    try:
        yield
    finally:
        await service.close()


CAPABILITY = Capability(
    name="fs", provides=(FS_KEY,), lifecycle=lifecycle, routes=http.routes, operations=OPERATIONS
)
