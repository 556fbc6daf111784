"""The extensions capability: unpacked extensions in the state dir, loaded by restarting Chromium."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..capability import Capability
from ..cdp import CDP_KEY
from ..config import Config
from ..events import EVENTS_KEY
from ..fs.zipin import Limits
from ..services import Services
from ..supervisor_rpc import Supervisor
from . import EXTENSIONS_KEY, http
from .operations import OPERATIONS
from .service import ExtensionsService


@contextlib.asynccontextmanager
async def lifecycle(services: Services, config: Config) -> AsyncIterator[None]:
    service = ExtensionsService(
        config.state_dir.absolute(),
        Supervisor(config.supervisor_socket),
        services.get(CDP_KEY),
        Limits(max_bytes=config.extensions_max_extract_bytes, max_entries=config.extensions_max_entries),
        ready_timeout_s=config.extensions_ready_timeout_s,
        publish=services.get(EVENTS_KEY).publish,
    )
    await service.start()
    services.provide(EXTENSIONS_KEY, service)
    try:
        yield
    finally:
        await service.close()


def health(services: Services) -> Mapping[str, Any]:
    return {"extensions": services.get(EXTENSIONS_KEY).status()}


CAPABILITY = Capability(
    name="extensions",
    provides=(EXTENSIONS_KEY,),
    requires=(CDP_KEY, EVENTS_KEY),
    lifecycle=lifecycle,
    routes=http.routes,
    operations=OPERATIONS,
    health=health,
)
