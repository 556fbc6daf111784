"""The webmcp capability: the injected navigator.modelContext in every tab, over the shared CDP connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..services import Services
from . import WEBMCP_KEY, http
from .operations import OPERATIONS
from .service import WebmcpService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = WebmcpService(services.get(CDP_KEY))
    services.provide(WEBMCP_KEY, service)
    service.start()
    try:
        yield
    finally:
        await service.close()


CAPABILITY = Capability(
    name="webmcp",
    provides=(WEBMCP_KEY,),
    requires=(CDP_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
)
