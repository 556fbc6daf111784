"""The playwright capability: Node workers connected over CDP, one per executor, started warm."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from ..capability import Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..services import Services
from . import PLAYWRIGHT_KEY, http
from .operations import OPERATIONS
from .service import PlaywrightService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = PlaywrightService(
        services.get(CDP_KEY),
        endpoint=config.chromium_cdp_url,
        node=config.playwright_node,
        max_executors=config.playwright_max_executors,
        start_timeout_s=config.playwright_start_timeout_s,
        temp_dir=config.state_dir.absolute() / "tmp",
        idle_detach_s=config.playwright_idle_detach_s,
    )
    services.provide(PLAYWRIGHT_KEY, service)
    service.warm_up()
    try:
        yield
    finally:
        await service.close()


CAPABILITY = Capability(
    name="playwright",
    provides=(PLAYWRIGHT_KEY,),
    requires=(CDP_KEY,),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
)
