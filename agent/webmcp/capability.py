"""The webmcp capability: the injected navigator.modelContext in every tab, over the shared CDP connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..cdp import CDP_KEY, CDP_PROXY_KEY
from ..config import Config
from ..services import Services
from . import WEBMCP_KEY, http
from .operations import OPERATIONS
from .service import WebmcpService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = WebmcpService(services.get(CDP_KEY))
    services.provide(WEBMCP_KEY, service)
    proxy = services.get(CDP_PROXY_KEY)
    proxy.new_tab_hooks.append(service.before_new_tab)
    service.start()
    try:
        yield
    finally:
        proxy.new_tab_hooks.remove(service.before_new_tab)
        await service.close()


CAPABILITY = Capability(
    name="webmcp",
    provides=(WEBMCP_KEY,),
    requires=(CDP_KEY, CDP_PROXY_KEY),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
)
